//! Field-level schema compatibility: apache-avro's verdict, explained per field.
//!
//! [`check`] walks the reader schema against the writer schema the way Avro schema resolution does and names
//! every field that cannot be resolved. Leaf types (primitives, logical types, fixed) are judged by
//! [`apache_avro::schema_compatibility::SchemaCompatibility::can_read`]. One deliberate difference from
//! apache-avro 0.21: a writer enum symbol unknown to the reader is accepted when the reader's enum has a
//! default, as the Avro specification's resolution rules say (apache-avro ignores enum defaults).

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, RecordSchema};
use apache_avro::schema_compatibility::SchemaCompatibility;

/// One field that a reader cannot resolve from a writer's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// Dotted path of the field from the top-level record, e.g. `error.kind`; `<root>` for the record itself.
    pub field: String,
    /// Why the reader cannot read it.
    pub reason: String,
}

/// Every incompatibility of reading data written with `writer` using `reader`. Empty means compatible.
pub fn check(writer: &Schema, reader: &Schema) -> Vec<Incompatibility> {
    let mut walker = Walker {
        writer_names: named_types(writer),
        reader_names: named_types(reader),
        found: Vec::new(),
        depth: 0,
    };
    walker.walk("", writer, reader);
    let mut found = walker.found;
    if found.is_empty() {
        // The walker mirrors apache-avro; should they ever disagree, apache-avro's verdict stands,
        // except for the enum-default rule documented above.
        if let Err(err) = SchemaCompatibility::can_read(writer, reader)
            && !is_missing_symbols(&err)
        {
            found.push(Incompatibility {
                field: "<root>".into(),
                reason: err.to_string(),
            });
        }
    }
    found
}

fn is_missing_symbols(err: &apache_avro::error::CompatibilityError) -> bool {
    use apache_avro::error::CompatibilityError as E;
    match err {
        E::MissingSymbols => true,
        E::FieldTypeMismatch(_, inner) => is_missing_symbols(inner),
        _ => false,
    }
}

struct Walker<'a> {
    writer_names: HashMap<Name, &'a Schema>,
    reader_names: HashMap<Name, &'a Schema>,
    found: Vec<Incompatibility>,
    depth: usize,
}

fn named_types(schema: &Schema) -> HashMap<Name, &Schema> {
    fn collect<'a>(schema: &'a Schema, out: &mut HashMap<Name, &'a Schema>) {
        match schema {
            Schema::Record(r) => {
                out.insert(r.name.clone(), schema);
                for f in &r.fields {
                    collect(&f.schema, out);
                }
            }
            Schema::Enum(e) => {
                out.insert(e.name.clone(), schema);
            }
            Schema::Fixed(f) => {
                out.insert(f.name.clone(), schema);
            }
            Schema::Array(a) => collect(&a.items, out),
            Schema::Map(m) => collect(&m.types, out),
            Schema::Union(u) => u.variants().iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    collect(schema, &mut out);
    out
}

/// A short description of a schema's type, e.g. `string`, `record saga.tracker.StepError`, `union [null, long]`.
pub fn describe(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("fixed {} (size {})", f.name.fullname(None), f.size),
        Schema::Ref { name } => name.fullname(None),
        Schema::Array(a) => format!("array<{}>", describe(&a.items)),
        Schema::Map(m) => format!("map<{}>", describe(&m.types)),
        Schema::Union(u) => {
            let parts: Vec<String> = u.variants().iter().map(describe).collect();
            format!("union [{}]", parts.join(", "))
        }
        Schema::Uuid => "string (uuid)".into(),
        Schema::Date => "int (date)".into(),
        Schema::TimeMillis => "int (time-millis)".into(),
        Schema::TimeMicros => "long (time-micros)".into(),
        Schema::TimestampMillis => "long (timestamp-millis)".into(),
        Schema::TimestampMicros => "long (timestamp-micros)".into(),
        Schema::TimestampNanos => "long (timestamp-nanos)".into(),
        Schema::LocalTimestampMillis => "long (local-timestamp-millis)".into(),
        Schema::LocalTimestampMicros => "long (local-timestamp-micros)".into(),
        Schema::LocalTimestampNanos => "long (local-timestamp-nanos)".into(),
        other => {
            let kind = format!("{:?}", apache_avro::schema::SchemaKind::from(other));
            kind.to_lowercase()
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn same_shape(w: &Schema, r: &Schema) -> bool {
    match (w, r) {
        (Schema::Record(a), Schema::Record(b)) => a.name == b.name,
        (Schema::Enum(a), Schema::Enum(b)) => a.name == b.name,
        (Schema::Fixed(a), Schema::Fixed(b)) => a.name == b.name,
        (Schema::Array(_), Schema::Array(_)) | (Schema::Map(_), Schema::Map(_)) => true,
        _ => false,
    }
}

impl<'a> Walker<'a> {
    fn resolve(&self, schema: &'a Schema, writer: bool) -> &'a Schema {
        if let Schema::Ref { name } = schema {
            let names = if writer {
                &self.writer_names
            } else {
                &self.reader_names
            };
            if let Some(found) = names.get(name) {
                return found;
            }
        }
        schema
    }

    fn push(&mut self, path: &str, reason: String) {
        let field = if path.is_empty() {
            "<root>".to_owned()
        } else {
            path.to_owned()
        };
        self.found.push(Incompatibility { field, reason });
    }

    fn walk(&mut self, path: &str, w: &'a Schema, r: &'a Schema) {
        // Recursive named types: schema resolution terminates; so does this walk.
        if self.depth > 64 {
            return;
        }
        self.depth += 1;
        let w = self.resolve(w, true);
        let r = self.resolve(r, false);
        match (w, r) {
            (Schema::Record(wr), Schema::Record(rr)) => self.records(path, wr, rr),
            (Schema::Enum(we), Schema::Enum(re)) => {
                if we.name != re.name
                    && !re
                        .aliases
                        .iter()
                        .flatten()
                        .any(|a| a.fullname(None) == we.name.fullname(None))
                {
                    self.push(
                        path,
                        format!(
                            "enum renamed from {} to {}",
                            we.name.fullname(None),
                            re.name.fullname(None)
                        ),
                    );
                }
                let missing: Vec<&str> = we
                    .symbols
                    .iter()
                    .filter(|s| !re.symbols.contains(s))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() && re.default.is_none() {
                    self.push(
                        path,
                        format!(
                            "enum symbol(s) {} written by the writer are not in the reader's enum {}, which has no default",
                            missing.join(", "),
                            re.name.fullname(None)
                        ),
                    );
                }
            }
            (Schema::Array(wa), Schema::Array(ra)) => {
                self.walk(&format!("{path}[]"), &wa.items, &ra.items)
            }
            (Schema::Map(wm), Schema::Map(rm)) => {
                self.walk(&format!("{path}{{}}"), &wm.types, &rm.types)
            }
            (Schema::Union(wu), _) => {
                for branch in wu.variants() {
                    let branch = self.resolve(branch, true);
                    match r {
                        Schema::Union(ru) => self.through_union(path, branch, ru.variants(), w, r),
                        _ => self.walk(path, branch, r),
                    }
                }
            }
            (_, Schema::Union(ru)) => self.through_union(path, w, ru.variants(), w, r),
            _ => {
                if let Err(err) = SchemaCompatibility::can_read(w, r) {
                    let reason = match err {
                        apache_avro::error::CompatibilityError::WrongType { .. }
                        | apache_avro::error::CompatibilityError::TypeExpected { .. } => {
                            format!(
                                "type changed: the writer's {} cannot be read as {}",
                                describe(w),
                                describe(r)
                            )
                        }
                        other => {
                            format!("{other} (writer {}, reader {})", describe(w), describe(r))
                        }
                    };
                    self.push(path, reason);
                }
            }
        }
        self.depth -= 1;
    }

    /// A writer type read through a reader union: the first branch of the same named type or shape is
    /// resolved field by field; otherwise any branch apache-avro accepts will do.
    fn through_union(
        &mut self,
        path: &str,
        w: &'a Schema,
        branches: &'a [Schema],
        whole_w: &Schema,
        whole_r: &Schema,
    ) {
        for branch in branches {
            let branch = self.resolve(branch, false);
            if same_shape(w, branch) {
                self.walk(path, w, branch);
                return;
            }
        }
        let readable = branches.iter().any(|b| {
            let b = self.resolve(b, false);
            !matches!(
                b,
                Schema::Record(_) | Schema::Enum(_) | Schema::Array(_) | Schema::Map(_)
            ) && SchemaCompatibility::can_read(w, b).is_ok()
        });
        if !readable {
            self.push(
                path,
                format!(
                    "type changed: the writer's {} (in {}) matches no branch of the reader's {}",
                    describe(w),
                    describe(whole_w),
                    describe(whole_r)
                ),
            );
        }
    }

    fn records(&mut self, path: &str, w: &'a RecordSchema, r: &'a RecordSchema) {
        if w.name != r.name
            && !r
                .aliases
                .iter()
                .flatten()
                .any(|a| a.fullname(None) == w.name.fullname(None))
        {
            self.push(
                path,
                format!(
                    "record renamed from {} to {}",
                    w.name.fullname(None),
                    r.name.fullname(None)
                ),
            );
        }
        for field in &r.fields {
            let names = std::iter::once(&field.name).chain(field.aliases.iter().flatten());
            let writer_field = names
                .filter_map(|n| w.lookup.get(n).map(|&pos| &w.fields[pos]))
                .find(|wf| {
                    field.name == wf.name || field.aliases.iter().flatten().any(|a| *a == wf.name)
                });
            match writer_field {
                Some(wf) => self.walk(&join(path, &field.name), &wf.schema, &field.schema),
                None if field.default.is_none() => self.push(
                    &join(path, &field.name),
                    format!(
                        "missing from the writer's {} and the reader declares no default for it",
                        w.name.fullname(None)
                    ),
                ),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"E","namespace":"t","fields":[{fields}]}}"#
        ))
        .expect("test schema parses")
    }

    #[test]
    fn identical_schemas_are_compatible() {
        let s = schema(r#"{"name":"a","type":"string"}"#);
        assert!(check(&s, &s).is_empty());
    }

    #[test]
    fn a_field_added_without_default_breaks_reading_old_data() {
        let old = schema(r#"{"name":"a","type":"string"}"#);
        let new = schema(r#"{"name":"a","type":"string"},{"name":"b","type":"long"}"#);
        let found = check(&old, &new);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "b");
        assert!(
            found[0].reason.contains("no default"),
            "{}",
            found[0].reason
        );
        assert!(check(&new, &old).is_empty());
    }

    #[test]
    fn a_type_change_names_the_field_and_both_types() {
        let old = schema(r#"{"name":"a","type":"string"}"#);
        let new = schema(r#"{"name":"a","type":"int"}"#);
        let found = check(&old, &new);
        assert_eq!(found[0].field, "a");
        assert!(
            found[0].reason.contains("string") && found[0].reason.contains("int"),
            "{}",
            found[0].reason
        );
    }

    #[test]
    fn int_to_long_promotion_reads_one_way_only() {
        let old = schema(r#"{"name":"a","type":"int"}"#);
        let new = schema(r#"{"name":"a","type":"long"}"#);
        assert!(check(&old, &new).is_empty());
        assert_eq!(check(&new, &old)[0].field, "a");
    }

    #[test]
    fn nested_record_field_in_a_union_is_named_with_its_path() {
        let old = schema(
            r#"{"name":"error","type":["null",{"type":"record","name":"Err","fields":[{"name":"kind","type":"string"}]}],"default":null}"#,
        );
        let new = schema(
            r#"{"name":"error","type":["null",{"type":"record","name":"Err","fields":[{"name":"kind","type":"string"},{"name":"code","type":"int"}]}],"default":null}"#,
        );
        let found = check(&old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "error.code");
    }

    #[test]
    fn new_enum_symbol_is_readable_by_an_old_reader_with_a_default_only() {
        let with_default = |symbols: &str| {
            schema(&format!(
                r#"{{"name":"s","type":{{"type":"enum","name":"S","symbols":[{symbols}],"default":"U"}}}}"#
            ))
        };
        let without_default = |symbols: &str| {
            schema(&format!(
                r#"{{"name":"s","type":{{"type":"enum","name":"S","symbols":[{symbols}]}}}}"#
            ))
        };
        assert!(check(&with_default(r#""A","U","B""#), &with_default(r#""A","U""#)).is_empty());
        let found = check(&without_default(r#""A","B""#), &without_default(r#""A""#));
        assert_eq!(found[0].field, "s");
        assert!(found[0].reason.contains('B'), "{}", found[0].reason);
    }

    #[test]
    fn making_an_optional_field_required_breaks_null_values() {
        let old = schema(r#"{"name":"o","type":["null","string"],"default":null}"#);
        let new = schema(r#"{"name":"o","type":"string"}"#);
        let found = check(&old, &new);
        assert_eq!(found[0].field, "o");
        assert!(found[0].reason.contains("null"), "{}", found[0].reason);
    }
}
