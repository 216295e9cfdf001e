//! Schema identity: the Avro Parsing Canonical Form and the CRC-64-AVRO (Rabin) fingerprint.
//!
//! apache-avro's `canonical_form()` keeps `logicalType` attributes (upstream AVRO-4004) and so
//! yields a fingerprint no Java or Python reader would compute; this module follows the spec.

use serde_json::Value;

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// The 64-bit Rabin fingerprint the Avro specification calls CRC-64-AVRO.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    let mut fp = EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

/// A schema that cannot be brought to canonical form.
#[derive(Debug, thiserror::Error)]
#[error("invalid Avro schema: {0}")]
pub struct SchemaFormError(String);

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of a schema given as JSON (spec: "Transforming into Parsing Canonical Form").
pub fn parsing_canonical_form(schema: &Value) -> Result<String, SchemaFormError> {
    let mut out = String::new();
    let mut seen = Vec::new();
    write_pcf(schema, None, &mut seen, &mut out)?;
    Ok(out)
}

fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn write_pcf(
    schema: &Value,
    namespace: Option<&str>,
    seen: &mut Vec<String>,
    out: &mut String,
) -> Result<(), SchemaFormError> {
    match schema {
        Value::String(name) => {
            if PRIMITIVES.contains(&name.as_str()) {
                out.push_str(&json_str(name));
            } else {
                out.push_str(&json_str(&full_name(name, namespace)));
            }
            Ok(())
        }
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_pcf(branch, namespace, seen, out)?;
            }
            out.push(']');
            Ok(())
        }
        Value::Object(map) => {
            let ty = map
                .get("type")
                .ok_or_else(|| SchemaFormError("object without \"type\"".into()))?;
            let ty_name = match ty {
                Value::String(s) => s.as_str(),
                // {"type": {...}} or {"type": [...]}: the nested schema is the schema.
                other => return write_pcf(other, namespace, seen, out),
            };
            match ty_name {
                "record" | "error" | "enum" | "fixed" => {
                    let name = map
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| SchemaFormError(format!("{ty_name} without a name")))?;
                    let own_ns = map.get("namespace").and_then(Value::as_str).or(namespace);
                    let full = full_name(name, own_ns);
                    let inner_ns = full.rsplit_once('.').map(|(ns, _)| ns.to_owned());
                    if seen.contains(&full) {
                        out.push_str(&json_str(&full));
                        return Ok(());
                    }
                    seen.push(full.clone());
                    out.push_str("{\"name\":");
                    out.push_str(&json_str(&full));
                    out.push_str(",\"type\":");
                    out.push_str(&json_str(if ty_name == "error" {
                        "record"
                    } else {
                        ty_name
                    }));
                    match ty_name {
                        "enum" => {
                            out.push_str(",\"symbols\":");
                            let symbols = map.get("symbols").ok_or_else(|| {
                                SchemaFormError(format!("enum {full} without symbols"))
                            })?;
                            out.push_str(&symbols.to_string());
                        }
                        "fixed" => {
                            let size =
                                map.get("size").and_then(Value::as_u64).ok_or_else(|| {
                                    SchemaFormError(format!("fixed {full} without size"))
                                })?;
                            out.push_str(&format!(",\"size\":{size}"));
                        }
                        _ => {
                            out.push_str(",\"fields\":[");
                            let fields =
                                map.get("fields").and_then(Value::as_array).ok_or_else(|| {
                                    SchemaFormError(format!("record {full} without fields"))
                                })?;
                            for (i, field) in fields.iter().enumerate() {
                                if i > 0 {
                                    out.push(',');
                                }
                                let fname =
                                    field.get("name").and_then(Value::as_str).ok_or_else(|| {
                                        SchemaFormError(format!("a field of {full} has no name"))
                                    })?;
                                let ftype = field.get("type").ok_or_else(|| {
                                    SchemaFormError(format!("field {full}.{fname} has no type"))
                                })?;
                                out.push_str("{\"name\":");
                                out.push_str(&json_str(fname));
                                out.push_str(",\"type\":");
                                write_pcf(ftype, inner_ns.as_deref(), seen, out)?;
                                out.push('}');
                            }
                            out.push(']');
                        }
                    }
                    out.push('}');
                    Ok(())
                }
                "array" | "map" => {
                    let key = if ty_name == "array" {
                        "items"
                    } else {
                        "values"
                    };
                    let inner = map
                        .get(key)
                        .ok_or_else(|| SchemaFormError(format!("{ty_name} without {key}")))?;
                    out.push_str("{\"type\":");
                    out.push_str(&json_str(ty_name));
                    out.push_str(&format!(",\"{key}\":"));
                    write_pcf(inner, namespace, seen, out)?;
                    out.push('}');
                    Ok(())
                }
                // A primitive, possibly with a logicalType: the canonical form is the bare name.
                primitive => write_pcf(&Value::String(primitive.to_owned()), namespace, seen, out),
            }
        }
        other => Err(SchemaFormError(format!(
            "unexpected JSON in a schema: {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_avro_of_empty_input_is_the_seed() {
        assert_eq!(crc64_avro(b""), EMPTY);
    }

    #[test]
    fn primitive_and_logical_types_reduce_to_bare_names() {
        let v: Value = serde_json::from_str(r#"{"type":"long","logicalType":"timestamp-micros"}"#)
            .expect("json");
        assert_eq!(parsing_canonical_form(&v).expect("pcf"), r#""long""#);
    }

    #[test]
    fn a_type_without_type_attribute_is_an_error() {
        let v: Value = serde_json::from_str(r#"{"name":"x"}"#).expect("json");
        assert!(parsing_canonical_form(&v).is_err());
    }
}
