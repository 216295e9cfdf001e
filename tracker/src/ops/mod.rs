//! Operations on the tracker's data, run as subcommands of `saga-tracker-service` (usually from CronJobs):
//!
//! | command | module | requirement |
//! |---|---|---|
//! | `archive` | [`archive`] (+ [`partitions`], [`cold`]) | R7: 90 days online, then cold storage |
//! | `restore` | [`restore`] | R7: bring archived days back |
//! | `replay` | [`replay`] | R12: offset rewind by time |
//! | `dlq redrive` | [`redrive`] | R12: re-consume the DLQ |
//! | `topics ensure` | [`topics`] | R7: `saga.tracker` keeps 30 days |
//! | `reconcile` | [`reconcile`] | R9: daily comparison with the services' outbox tables |
//!
//! Each command is also a library function returning a summary. Errors say what to fix; [`OpsError::exit_code`]
//! maps them to the process exit code (2 = bad input or unreachable dependency, 1 = the command ran and found
//! a problem or refused to go on).

pub mod archive;
pub mod cli;
pub mod cold;
pub mod day;
pub mod partitions;
pub mod progress;
pub mod reconcile;
pub mod redrive;
pub mod replay;
pub mod restore;
pub mod topics;

use crate::db::StoreError;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A flag value that cannot be used (bad date, bad URL, ...).
    #[error("bad input: {0}")]
    Input(String),
    /// The tracker database could not be reached or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another database (an outbox) could not be reached.
    #[error("cannot connect to {what}: {source}")]
    Connect {
        /// Which database.
        what: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Kafka could not be reached or refused.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The cold store could not be reached or refused.
    #[error("cold storage: {0}")]
    ColdStore(#[from] object_store::Error),
    /// An archive file is not an archive of this tracker (other schema, corrupt, short).
    #[error("archive {path}: {reason}")]
    BadArchive {
        /// The object's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An export did not verify: the partition was kept.
    #[error("export of {day} did not verify ({reason}); partition kept, nothing dropped")]
    ExportNotVerified {
        /// The day.
        day: String,
        /// What did not match.
        reason: String,
    },
    /// The consumer group has live members.
    #[error(
        "consumer group `{group}` has live members ({members}); stop the tracker (scale it to 0) before rewinding its offsets"
    )]
    GroupActive {
        /// The group.
        group: String,
        /// Who holds it.
        members: String,
    },
    /// A database query failed mid-way.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Writing the report or a temporary file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl OpsError {
    /// 2 for bad input or an unreachable dependency, 1 for a failure found while running.
    pub fn exit_code(&self) -> u8 {
        match self {
            OpsError::Input(_)
            | OpsError::Store(_)
            | OpsError::Connect { .. }
            | OpsError::Kafka(_)
            | OpsError::BadArchive { .. }
            | OpsError::ColdStore(_) => 2,
            OpsError::ExportNotVerified { .. }
            | OpsError::GroupActive { .. }
            | OpsError::Database(_)
            | OpsError::Io(_) => 1,
        }
    }
}

impl From<rdkafka::error::KafkaError> for OpsError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        OpsError::Kafka(e.to_string())
    }
}
