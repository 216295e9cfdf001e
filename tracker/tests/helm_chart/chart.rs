//! The chart on disk: Chart.yaml, values.yaml, the templates, rendered like `helm template` would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use crate::template::{Templates, helm_numbers, merge};

/// The release the tests install.
pub const RELEASE: &str = "orders";
/// Its namespace.
pub const NAMESPACE: &str = "sagas";

/// The chart directory, its parsed parts and its template sources.
pub struct Chart {
    pub dir: PathBuf,
    pub values_text: String,
    pub values: Value,
    meta: Value,
    templates: Templates,
    pub sources: Vec<(String, String)>,
}

/// One Kubernetes object of the output, with the template file it came from.
#[derive(Debug, Clone)]
pub struct Object {
    pub file: String,
    pub value: Value,
}

impl Object {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
}

/// The output of one render.
pub struct Rendered {
    pub objects: Vec<Object>,
    pub notes: String,
}

impl Rendered {
    /// The objects of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> + 'a {
        self.objects.iter().filter(move |o| o.kind() == kind)
    }

    /// The one object of `kind` whose name ends with `suffix`.
    pub fn one<'a>(&'a self, kind: &'a str, suffix: &str) -> &'a Object {
        let found: Vec<_> = self
            .of_kind(kind)
            .filter(|o| o.name().ends_with(suffix))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {kind} named *{suffix}, found {}",
            found.len()
        );
        found[0]
    }

    /// (kind, name) of every object.
    pub fn kinds(&self) -> BTreeSet<(String, String)> {
        self.objects
            .iter()
            .map(|o| (o.kind().to_owned(), o.name().to_owned()))
            .collect()
    }
}

/// Parses YAML that must hold no duplicate keys (serde_yaml_ng refuses them).
pub fn yaml(text: &str, what: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
}

impl Chart {
    /// Loads `deploy/helm/saga-tracker`.
    pub fn load() -> Chart {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/saga-tracker");
        let read = |rel: &str| {
            std::fs::read_to_string(dir.join(rel))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(rel).display()))
        };
        let values_text = read("values.yaml");
        let values = yaml(&values_text, "values.yaml");
        let meta = yaml(&read("Chart.yaml"), "Chart.yaml");
        let mut names: Vec<String> = std::fs::read_dir(dir.join("templates"))
            .expect("templates/")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        let mut templates = Templates::default();
        let mut sources = Vec::new();
        for name in names {
            let rel = format!("templates/{name}");
            let src = read(&rel);
            templates
                .add(&rel, &src)
                .unwrap_or_else(|e| panic!("parsing {rel}: {e}"));
            sources.push((rel, src));
        }
        Chart {
            dir,
            values_text,
            values,
            meta,
            templates,
            sources,
        }
    }

    /// A values file of the chart's `ci/` folder (the examples the README installs with).
    pub fn ci_values(&self, name: &str) -> String {
        let path = self.dir.join("ci").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Renders with `overrides` (YAML, like `-f file`) merged over values.yaml.
    pub fn render(&self, overrides: &str) -> Result<Rendered, String> {
        self.render_layers(&[overrides])
    }

    /// Renders with each of `layers` merged over values.yaml in turn (like `-f a.yaml -f b.yaml`).
    pub fn render_layers(&self, layers: &[&str]) -> Result<Rendered, String> {
        let mut values = self.values.clone();
        for layer in layers.iter().filter(|l| !l.trim().is_empty()) {
            values = merge(&values, &yaml(layer, "the override values"));
        }
        let chart_field = |key: &str| self.meta[key].clone();
        let root = yaml(
            &format!(
                "Release: {{Name: {RELEASE}, Namespace: {NAMESPACE}, Service: Helm}}\nChart: {{}}\nValues: {{}}"
            ),
            "root",
        );
        let mut root = root;
        root["Chart"] = Value::Mapping(Mapping::from_iter([
            ("Name".into(), chart_field("name")),
            ("Version".into(), chart_field("version")),
            ("AppVersion".into(), chart_field("appVersion")),
        ]));
        root["Values"] = helm_numbers(&values);
        let outputs = self.templates.render_all(&root, &self.dir)?;
        let mut objects = Vec::new();
        let mut notes = String::new();
        for (file, text) in outputs {
            if file.ends_with("NOTES.txt") {
                notes = text;
                continue;
            }
            if let Some(line) = text.lines().find(|l| yaml11_ambiguous(l)) {
                return Err(format!(
                    "{file}: `{}` reads differently in YAML 1.1 (Kubernetes) and 1.2: quote it",
                    line.trim()
                ));
            }
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let value = Value::deserialize(doc)
                    .map_err(|e| format!("{file} renders invalid YAML: {e}\n{text}"))?;
                if !value.is_null() {
                    objects.push(Object {
                        file: file.clone(),
                        value,
                    });
                }
            }
        }
        Ok(Rendered { objects, notes })
    }

    /// Every `.Values.a.b` path the templates read.
    pub fn used_values(&self) -> BTreeSet<String> {
        let mut used = BTreeSet::new();
        for (_, src) in &self.sources {
            let mut rest = src.as_str();
            while let Some(i) = rest.find(".Values.") {
                let tail = &rest[i + ".Values.".len()..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .unwrap_or(tail.len());
                used.insert(tail[..end].trim_end_matches('.').to_owned());
                rest = &tail[end..];
            }
        }
        used
    }
}

/// Every key path of a values tree (maps only; a list or a scalar ends a path).
pub fn key_paths(v: &Value, prefix: &str, out: &mut Vec<(String, bool)>) {
    if let Value::Mapping(m) = v {
        for (k, child) in m {
            let key = k.as_str().expect("values keys are strings");
            let path = if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            };
            let is_leaf = !matches!(child, Value::Mapping(c) if !c.is_empty());
            out.push((path.clone(), is_leaf));
            key_paths(child, &path, out);
        }
    }
}

/// The key lines of values.yaml as (path, whether a `#` comment line is right above), read line by line:
/// block style, two-space indentation (the test checks the result against the parsed tree).
pub fn documented_keys(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut previous_is_comment = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('#') {
            previous_is_comment = true;
            continue;
        }
        let key_end = trimmed
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(trimmed.len());
        let is_key =
            key_end > 0 && trimmed[key_end..].starts_with(':') && !trimmed.starts_with("- ");
        if is_key {
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, trimmed[..key_end].to_owned()));
            let path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            out.push((path.join("."), previous_is_comment));
        }
        previous_is_comment = false;
    }
    out
}

/// A line whose plain (unquoted) value YAML 1.1 (Kubernetes' parser) reads as a boolean or an octal number
/// while YAML 1.2 (this test's parser) reads a string or a decimal: `on`, `yes`, `n`, `0644`.
pub fn yaml11_ambiguous(line: &str) -> bool {
    let t = line.trim_start().trim_start_matches("- ");
    let value = match t.split_once(": ") {
        Some((_, v)) => v,
        None => t,
    }
    .trim();
    let lower = value.to_ascii_lowercase();
    ["y", "n", "yes", "no", "on", "off"].contains(&lower.as_str())
        || (value.len() > 1 && value.starts_with('0') && value.bytes().all(|b| b.is_ascii_digit()))
}
