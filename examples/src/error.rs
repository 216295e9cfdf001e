//! [`DemoError`] and the process exit codes.

use std::path::PathBuf;
use std::time::Duration;

/// Exit code for bad input (arguments, unreachable brokers, an unwritable `--emit-json`, an unusable
/// `--database-url` with `--with-tracker`).
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when some saga's recorded timeline is inconsistent.
pub const EXIT_INCONSISTENT: u8 = 1;
/// Exit code when the demo could not finish (Kafka errors, a service that does not answer).
pub const EXIT_FAILED: u8 = 3;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A bad argument.
    #[error("{0}")]
    InvalidInput(String),
    /// `--brokers` did not answer.
    #[error("cannot reach Kafka at {brokers} within {timeout:?}: {reason}")]
    BrokersUnreachable {
        /// The bootstrap servers.
        brokers: String,
        /// How long we waited.
        timeout: Duration,
        /// What librdkafka said.
        reason: String,
    },
    /// The `--emit-json` file cannot be written.
    #[error("cannot write --emit-json {path}: {source}")]
    EmitJson {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A Kafka operation failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// A service did not answer a command.
    #[error(
        "no reply from {service} to {step} of {saga_id} within {timeout:?} (is a process consuming {topic}?)"
    )]
    NoReply {
        /// The service.
        service: &'static str,
        /// Its command topic.
        topic: &'static str,
        /// The saga.
        saga_id: String,
        /// The step.
        step: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// The saga tracker could not be built or flushed.
    #[error("saga tracker: {0}")]
    Tracker(String),
    /// `--with-tracker`: PostgreSQL is unreachable or the URL is invalid.
    #[error("--with-tracker: cannot use the database at {url}: {reason}")]
    TrackerDatabase {
        /// The URL, password redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// `--outbox`: PostgreSQL is unreachable, the URL is invalid, or the run's schema cannot be created.
    #[error("--outbox: cannot use the database at {url}: {reason}")]
    OutboxDatabase {
        /// The URL, password redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// `--with-tracker`: the tracker service failed (start, ingestion, API).
    #[error("tracker service: {0}")]
    TrackerService(String),
    /// A bug in the demo.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DemoError {
    /// The process exit code for this error: [`EXIT_BAD_INPUT`] or [`EXIT_FAILED`].
    pub fn exit_code(&self) -> u8 {
        match self {
            DemoError::InvalidInput(_)
            | DemoError::BrokersUnreachable { .. }
            | DemoError::EmitJson { .. }
            | DemoError::TrackerDatabase { .. }
            | DemoError::OutboxDatabase { .. } => EXIT_BAD_INPUT,
            _ => EXIT_FAILED,
        }
    }
}
