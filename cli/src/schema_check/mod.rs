//! `saga-tracker schema check`: the current schema against every released version, in both directions.

pub mod compat;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use saga_tracker_core::codec::fingerprint::{crc64_avro, parsing_canonical_form};

use crate::error::CliError;
use crate::paths;

/// A schema file read and parsed, or the reason it could not be.
struct Loaded {
    path: PathBuf,
    label: String,
    parsed: Result<(Schema, String), String>,
}

/// The spec fingerprint (CRC-64-AVRO of the Parsing Canonical Form) as the 8 little-endian bytes in hex,
/// the way they appear after `C3 01` on the wire.
pub fn fingerprint_hex(schema_json: &serde_json::Value) -> Result<String, String> {
    let pcf = parsing_canonical_form(schema_json).map_err(|e| e.to_string())?;
    Ok(hex::encode(crc64_avro(pcf.as_bytes()).to_le_bytes()))
}

fn load(path: &Path, label: String) -> Result<Loaded, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::read("schema", path, e))?;
    let parsed = (|| {
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
        let fingerprint = fingerprint_hex(&json)?;
        let schema = Schema::parse(&json).map_err(|e| format!("not a valid Avro schema: {e}"))?;
        Ok((schema, fingerprint))
    })();
    Ok(Loaded {
        path: path.to_path_buf(),
        label,
        parsed,
    })
}

/// `SagaTracker.v12.avsc` → (Some(12), "v12"); other names sort after, by name.
fn version_of(file_name: &str) -> (Option<u64>, String) {
    let stem = file_name.strip_suffix(".avsc").unwrap_or(file_name);
    let version = stem
        .rsplit('.')
        .next()
        .and_then(|last| last.strip_prefix('v').or_else(|| last.strip_prefix('V')))
        .and_then(|n| n.parse::<u64>().ok());
    match version {
        Some(v) => (Some(v), format!("v{v}")),
        None => (None, stem.to_owned()),
    }
}

fn history_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, CliError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| CliError::read("history directory", dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CliError::read("history directory", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".avsc") && entry.path().is_file() {
            let (version, label) = version_of(&name);
            files.push((version, name, entry.path(), label));
        }
    }
    if files.is_empty() {
        return Err(CliError::EmptyHistory {
            path: dir.to_path_buf(),
        });
    }
    files.sort_by(|a, b| (a.0.is_none(), a.0, &a.1).cmp(&(b.0.is_none(), b.0, &b.1)));
    Ok(files
        .into_iter()
        .map(|(_, _, path, label)| (path, label))
        .collect())
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

/// Runs the check and prints the report; `Ok(false)` when any version is incompatible or unreadable.
pub fn run(schema: &Path, history: &Path) -> Result<bool, CliError> {
    let schema_path = paths::resolve_upwards(schema);
    let history_dir = paths::resolve_upwards(history);
    let current = load(&schema_path, "current".into())?;
    let versions = history_files(&history_dir)?
        .into_iter()
        .map(|(path, label)| load(&path, label))
        .collect::<Result<Vec<_>, _>>()?;

    let mut out = String::new();
    let mut ok = true;
    let current_schema = match &current.parsed {
        Ok((schema, fingerprint)) => {
            let _ = writeln!(
                out,
                "current  {}  fingerprint {fingerprint}",
                paths::display(&current.path)
            );
            schema
        }
        Err(reason) => {
            let _ = writeln!(
                out,
                "✗ current  {}: {reason}",
                paths::display(&current.path)
            );
            crate::output::print(&out)?;
            return Ok(false);
        }
    };
    let _ = writeln!(
        out,
        "history  {} ({} version(s))",
        paths::display(&history_dir),
        versions.len()
    );
    for version in &versions {
        let (old, fingerprint) = match &version.parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                ok = false;
                let _ = writeln!(
                    out,
                    "✗ {}  {}: {reason}",
                    version.label,
                    paths::display(&version.path)
                );
                continue;
            }
        };
        // Backward: the current schema reads data written with the old one. Forward: the old reads the new.
        let backward = compat::check(old, current_schema);
        let forward = compat::check(current_schema, old);
        let version_ok = backward.is_empty() && forward.is_empty();
        ok &= version_ok;
        let _ = writeln!(
            out,
            "{} {}  {}  fingerprint {fingerprint}  backward {}  forward {}",
            mark(version_ok),
            version.label,
            paths::display(&version.path),
            mark(backward.is_empty()),
            mark(forward.is_empty()),
        );
        for item in &backward {
            let _ = writeln!(
                out,
                "    backward (current reads {} data): field `{}`: {}",
                version.label, item.field, item.reason
            );
        }
        for item in &forward {
            let _ = writeln!(
                out,
                "    forward ({} reads current data): field `{}`: {}",
                version.label, item.field, item.reason
            );
        }
    }
    if ok {
        let _ = writeln!(
            out,
            "compatible: the current schema is backward and forward compatible with every version"
        );
    } else {
        let _ = writeln!(out, "INCOMPATIBLE: see the ✗ lines above");
    }
    crate::output::print(&out)?;
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_labels_come_from_the_file_name() {
        assert_eq!(
            version_of("SagaTracker.v12.avsc"),
            (Some(12), "v12".to_owned())
        );
        assert_eq!(version_of("draft.avsc"), (None, "draft".to_owned()));
    }

    #[test]
    fn repository_schema_has_the_v1_fingerprint() {
        let json: serde_json::Value =
            serde_json::from_str(saga_tracker_core::schema::SCHEMA_JSON).expect("schema is JSON");
        assert_eq!(
            fingerprint_hex(&json).expect("fingerprint"),
            "4ea4c63af7f12518"
        );
    }
}
