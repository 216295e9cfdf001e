//! Usage and I/O errors: everything that stops a command before it can give a verdict (exit code 2).

use std::path::PathBuf;

/// An error that prevents a command from running its checks.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The outbox relay could not start or stopped with an error.
    #[cfg(feature = "outbox")]
    #[error("outbox relay: {0}")]
    Outbox(String),
    /// A file or directory that was asked for does not exist.
    #[error("{what} `{}` does not exist", path.display())]
    NotFound {
        /// What the path was supposed to be (e.g. "manifest").
        what: &'static str,
        /// The path as given.
        path: PathBuf,
    },
    /// Reading a file or directory failed.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Schema registry ids the decoder cannot use.
    #[error("--registry-schema-ids: {0}")]
    Schemas(#[from] saga_tracker_core::codec::KnownSchemasError),
    /// Reading stdin or writing stdout failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// A Cargo.toml or saga-tracker.toml that cannot be used.
    #[error("invalid `{}`: {reason}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The history directory holds no `*.avsc` file.
    #[error("no `*.avsc` schema in history directory `{}`", path.display())]
    EmptyHistory {
        /// The directory.
        path: PathBuf,
    },
}

impl CliError {
    /// A read error, or [`CliError::NotFound`] when the path does not exist.
    pub fn read(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            CliError::NotFound { what, path }
        } else {
            CliError::Read { path, source }
        }
    }
}
