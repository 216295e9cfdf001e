//! Reading a crate's `Cargo.toml` (and `saga-tracker.toml`): package name, data owner, handler patterns and
//! the source files to scan.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::CliError;

/// Where an un-annotated function is suspected of being a handler.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HandlerPatterns {
    /// Module names or paths (`handlers`, `api::handlers`, globs allowed): every function in them.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Function-name globs, e.g. `handle_*`.
    #[serde(default)]
    pub names: Vec<String>,
    /// Type names, e.g. `Transaction`: functions with a parameter whose type mentions one.
    #[serde(default)]
    pub param_types: Vec<String>,
}

impl HandlerPatterns {
    /// True when no pattern is set.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty() && self.names.is_empty() && self.param_types.is_empty()
    }

    fn merge(&mut self, other: HandlerPatterns) {
        self.modules.extend(other.modules);
        self.names.extend(other.names);
        self.param_types.extend(other.param_types);
    }
}

/// `[package.metadata.saga-tracker]`, or the whole of `saga-tracker.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TrackerConfig {
    owner: Option<String>,
    #[serde(default)]
    service_owners: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    handler_patterns: HandlerPatterns,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    package: Option<PackageSection>,
    workspace: Option<WorkspaceSection>,
    lib: Option<TargetSection>,
    #[serde(default)]
    bin: Vec<TargetSection>,
}

#[derive(Debug, Deserialize)]
struct PackageSection {
    name: String,
    metadata: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
struct WorkspaceSection {
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct TargetSection {
    path: Option<String>,
}

/// A crate to check.
#[derive(Debug, Clone)]
pub struct Package {
    /// `[package] name`.
    pub name: String,
    /// Its Cargo.toml.
    pub manifest: PathBuf,
    /// The data owner, when named (blank counts as not named).
    pub owner: Option<String>,
    /// The file and line that name the owner (or where it should be named).
    pub owner_file: PathBuf,
    /// The line in `owner_file`.
    pub owner_line: usize,
    /// `service-owners`: the data owner of each `saga_service!` service, when a crate holds several services.
    pub service_owners: std::collections::BTreeMap<String, String>,
    /// Patterns for un-annotated handler candidates.
    pub patterns: HandlerPatterns,
    /// The source root (`src/`), module paths are relative to it.
    pub src_dir: PathBuf,
    /// Every `.rs` file to scan, sorted.
    pub sources: Vec<PathBuf>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> CliError {
    CliError::Manifest {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a manifest. A package manifest gives one package; a virtual workspace manifest gives its members.
pub fn load(manifest_path: &Path) -> Result<Vec<Package>, CliError> {
    if !manifest_path.exists() {
        return Err(CliError::NotFound {
            what: "manifest",
            path: manifest_path.to_path_buf(),
        });
    }
    let manifest_path = if manifest_path.is_dir() {
        manifest_path.join("Cargo.toml")
    } else {
        manifest_path.to_path_buf()
    };
    let manifest_path = std::path::absolute(&manifest_path).unwrap_or(manifest_path);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| CliError::read("manifest", &manifest_path, e))?;
    let manifest: Manifest =
        toml::from_str(&text).map_err(|e| invalid(&manifest_path, e.message().to_owned()))?;
    let dir = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let Some(package) = manifest.package else {
        let members = manifest.workspace.map(|w| w.members).unwrap_or_default();
        if members.is_empty() {
            return Err(invalid(
                &manifest_path,
                "neither a [package] nor a [workspace] with members",
            ));
        }
        let mut out = Vec::new();
        for member_dir in expand_members(&dir, &members) {
            out.extend(load(&member_dir.join("Cargo.toml"))?);
        }
        return Ok(out);
    };

    let mut config = match package
        .metadata
        .as_ref()
        .and_then(|m| m.get("saga-tracker"))
    {
        Some(value) => value.clone().try_into::<TrackerConfig>().map_err(|e| {
            invalid(
                &manifest_path,
                format!("[package.metadata.saga-tracker]: {}", e.message()),
            )
        })?,
        None => TrackerConfig::default(),
    };
    let mut owner_file = manifest_path.clone();
    let mut owner_line = line_of_key(&text, "owner")
        .or_else(|| line_of(&text, "[package]"))
        .unwrap_or(1);

    let side_file = dir.join("saga-tracker.toml");
    if side_file.is_file() {
        let side_text = std::fs::read_to_string(&side_file)
            .map_err(|e| CliError::read("config", &side_file, e))?;
        let side: TrackerConfig =
            toml::from_str(&side_text).map_err(|e| invalid(&side_file, e.message().to_owned()))?;
        if side.owner.is_some() {
            config.owner = side.owner;
            owner_file = side_file.clone();
            owner_line = line_of_key(&side_text, "owner").unwrap_or(1);
        }
        config.service_owners.extend(side.service_owners);
        config.handler_patterns.merge(side.handler_patterns);
    }

    let src_dir = dir.join("src");
    let mut roots = vec![src_dir.clone()];
    let targets = manifest.lib.iter().chain(&manifest.bin);
    for target in targets.filter_map(|t| t.path.as_deref()) {
        if let Some(parent) = dir.join(target).parent()
            && !roots.iter().any(|r| parent.starts_with(r))
        {
            roots.push(parent.to_path_buf());
        }
    }
    let mut sources = Vec::new();
    for root in &roots {
        collect_rs(root, &mut sources).map_err(|e| CliError::read("source directory", root, e))?;
    }
    sources.sort();
    sources.dedup();

    Ok(vec![Package {
        name: package.name,
        manifest: manifest_path,
        owner: config.owner.filter(|o| !o.trim().is_empty()),
        owner_file,
        owner_line,
        service_owners: config
            .service_owners
            .into_iter()
            .filter(|(_, o)| !o.trim().is_empty())
            .collect(),
        patterns: config.handler_patterns,
        src_dir,
        sources,
    }])
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map(|i| i + 1)
}

fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// Workspace members: plain paths and a trailing `*` glob (`crates/*`).
fn expand_members(dir: &Path, members: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for member in members {
        if let Some(prefix) = member.strip_suffix("/*") {
            if let Ok(entries) = std::fs::read_dir(dir.join(prefix)) {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.join("Cargo.toml").is_file())
                    .collect();
                found.sort();
                out.extend(found);
            }
        } else {
            out.push(dir.join(member));
        }
    }
    out
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The module path of a source file relative to `src_dir`: `src/lib.rs` → `[]`, `src/a/mod.rs` → `[a]`,
/// `src/a/b.rs` → `[a, b]`.
pub fn module_path_of(src_dir: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.strip_suffix(".rs").unwrap_or(&last).to_owned();
        let is_root = parts.is_empty() && (stem == "lib" || stem == "main");
        if stem != "mod" && !is_root {
            parts.push(stem);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths_follow_the_file_layout() {
        let src = Path::new("/c/src");
        assert!(module_path_of(src, Path::new("/c/src/lib.rs")).is_empty());
        assert_eq!(module_path_of(src, Path::new("/c/src/a/mod.rs")), vec!["a"]);
        assert_eq!(
            module_path_of(src, Path::new("/c/src/a/b.rs")),
            vec!["a", "b"]
        );
    }

    #[test]
    fn owner_line_is_found() {
        let text = "[package]\nname = \"x\"\n[package.metadata.saga-tracker]\nowner = \"team\"\n";
        assert_eq!(line_of_key(text, "owner"), Some(4));
    }
}
