//! Resolving default paths and printing paths relative to the current directory.

use std::path::{Path, PathBuf};

/// `path` as given when it exists or is absolute; otherwise the first ancestor of the current directory that
/// holds it (so `schemas/history` is found from a sub-directory of the workspace). Falls back to `path`.
pub fn resolve_upwards(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors().skip(1) {
            let candidate = dir.join(path);
            if candidate.exists() {
                return candidate;
            }
        }
    }
    path.to_path_buf()
}

/// `path` relative to the current directory when it lies below it, else unchanged; with `/` separators.
pub fn display(path: &Path) -> String {
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf());
    shown.to_string_lossy().replace('\\', "/")
}
