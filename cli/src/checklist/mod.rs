//! `saga-tracker checklist`: proves from source that every declared saga step is recorded.
//!
//! Reads the crates with syn (nothing is compiled), so it runs on a release branch before a build.
//! See `cli/README.md` for the source syntax understood and the configuration keys.

pub mod config;
pub mod report;
pub mod rules;
pub mod scan;

use std::path::{Path, PathBuf};

use crate::Format;
use crate::error::CliError;
use config::Package;
use rules::ScannedFile;

/// Loads every manifest (default `./Cargo.toml`), scans the sources and evaluates the checklist.
pub fn collect(manifest_paths: &[PathBuf]) -> Result<(Vec<Package>, Vec<report::Item>), CliError> {
    let default = [PathBuf::from("Cargo.toml")];
    let manifest_paths = if manifest_paths.is_empty() {
        &default[..]
    } else {
        manifest_paths
    };
    let mut packages: Vec<Package> = Vec::new();
    for path in manifest_paths {
        for package in config::load(path)? {
            if !packages.iter().any(|p| p.manifest == package.manifest) {
                packages.push(package);
            }
        }
    }
    let mut files = Vec::new();
    for (index, package) in packages.iter().enumerate() {
        for path in &package.sources {
            files.push(scan_file(index, package, path)?);
        }
    }
    let items = rules::evaluate(&packages, &files);
    Ok((packages, items))
}

fn scan_file(index: usize, package: &Package, path: &Path) -> Result<ScannedFile, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::read("source file", path, e))?;
    let module = config::module_path_of(&package.src_dir, path);
    Ok(ScannedFile {
        package: index,
        path: path.to_path_buf(),
        result: scan::scan_source(path, module, &text),
    })
}

/// Runs the checklist and prints it; `Ok(false)` when any item fails.
pub fn run(manifest_paths: &[PathBuf], format: Format) -> Result<bool, CliError> {
    let (packages, items) = collect(manifest_paths)?;
    let text = match format {
        Format::Md => report::markdown(&packages, &items),
        Format::Json => report::json(&packages, &items),
    };
    crate::output::print(&text)?;
    Ok(items.iter().all(|i| i.ok))
}
