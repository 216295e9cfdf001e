//! Service configuration: flags and environment variables (`DATABASE_URL`, `KAFKA_BROKERS`, ...).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How the consumer gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Assignment {
    /// Join the consumer group and let the broker balance partitions between replicas (production).
    #[default]
    Subscribe,
    /// Assign every partition of the topic to this consumer, resuming from the group's committed offsets
    /// (single replica, tests: no group rebalance delay).
    AssignAll,
}

/// Everything the service needs to run. Build it with [`Config::parse`] (flags + environment) or
/// [`Config::new`] and the `with_*` setters.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "saga-tracker-service",
    version,
    about = "saga.tracker -> PostgreSQL, timeline API, Prometheus metrics"
)]
pub struct Config {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// PostgreSQL schema holding the tracker's tables (created if missing); empty = the server's search_path.
    #[arg(long, env = "DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Maximum connections in the database pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "localhost:9092")]
    pub kafka_brokers: String,
    /// The topic the services publish to.
    #[arg(long, env = "TRACKER_TOPIC", default_value = "saga.tracker")]
    pub topic: String,
    /// Where messages that do not decode go.
    #[arg(long, env = "TRACKER_DLQ_TOPIC", default_value = "saga.tracker.dlq")]
    pub dlq_topic: String,
    /// The consumer group.
    #[arg(long, env = "TRACKER_GROUP_ID", default_value = "saga-tracker-service")]
    pub group_id: String,
    /// `subscribe` (consumer group) or `assign-all` (every partition, committed offsets of the group).
    #[arg(long, env = "TRACKER_ASSIGNMENT", value_enum, default_value_t = Assignment::Subscribe)]
    pub assignment: Assignment,
    /// Extra librdkafka properties, `key=value`, for both the consumer and the DLQ producer.
    #[arg(long = "kafka-property", value_parser = parse_key_value)]
    pub kafka_properties: Vec<(String, String)>,
    /// Also accept Confluent-framed messages (`00` + schema id) with this schema registry id.
    #[arg(long, env = "TRACKER_CONFLUENT_SCHEMA_ID")]
    pub confluent_schema_id: Option<u32>,
    /// The most messages written to the database in one transaction.
    #[arg(long, env = "TRACKER_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: usize,
    /// How long to wait for more messages before writing a partial batch, in milliseconds.
    #[arg(long, env = "TRACKER_BATCH_LINGER_MS", default_value_t = 50)]
    pub batch_linger_ms: u64,
    /// Address of the HTTP API and `/metrics`.
    #[arg(long, env = "TRACKER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// When set, every route but `/healthz`, `/livez`, `/readyz` and `/metrics` requires `Authorization: Bearer <token>`.
    #[arg(long, env = "TRACKER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A saga that is not terminal and has recorded nothing for this many minutes counts as stuck.
    #[arg(long, env = "TRACKER_STUCK_AFTER_MINUTES", default_value_t = 15)]
    pub stuck_after_minutes: u32,
    /// How often librdkafka reports statistics (consumer lag), in milliseconds.
    #[arg(long, env = "TRACKER_STATS_INTERVAL_MS", default_value_t = 5000)]
    pub stats_interval_ms: u64,
    /// A partition whose messages wait without ingestion progress for this many seconds is reported stalled
    /// (`saga_tracker_partition_stalled`, `/healthz` degraded).
    #[arg(long, env = "TRACKER_STALL_AFTER_SECONDS", default_value_t = 60)]
    pub stall_after_seconds: u64,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got `{s}`")),
    }
}

impl Config {
    /// A configuration with the defaults of the command line, for the given database and brokers.
    pub fn new(database_url: impl Into<String>, kafka_brokers: impl Into<String>) -> Self {
        Config {
            database_url: database_url.into(),
            database_schema: None,
            database_max_connections: 8,
            kafka_brokers: kafka_brokers.into(),
            topic: "saga.tracker".into(),
            dlq_topic: "saga.tracker.dlq".into(),
            group_id: "saga-tracker-service".into(),
            assignment: Assignment::Subscribe,
            kafka_properties: Vec::new(),
            confluent_schema_id: None,
            batch_size: 500,
            batch_linger_ms: 50,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            api_token: None,
            stuck_after_minutes: 15,
            stats_interval_ms: 5000,
            stall_after_seconds: 60,
        }
    }

    /// How long messages may wait without progress before their partition counts as stalled.
    pub fn stall_after(&self) -> Duration {
        Duration::from_secs(self.stall_after_seconds)
    }

    /// How long a saga may be silent before it counts as stuck.
    pub fn stuck_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.stuck_after_minutes) * 60)
    }

    /// Checks values a flag parser cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kafka_brokers.trim().is_empty() {
            return Err(ConfigError::Empty("kafka brokers"));
        }
        if self.topic.trim().is_empty() {
            return Err(ConfigError::Empty("topic"));
        }
        if self.dlq_topic.trim().is_empty() {
            return Err(ConfigError::Empty("DLQ topic"));
        }
        if self.dlq_topic == self.topic {
            return Err(ConfigError::DlqIsSource(self.topic.clone()));
        }
        if self.group_id.trim().is_empty() {
            return Err(ConfigError::Empty("group id"));
        }
        if self.batch_size == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        if let Some(schema) = &self.database_schema
            && !is_identifier(schema)
        {
            return Err(ConfigError::BadSchema(schema.clone()));
        }
        if matches!(&self.api_token, Some(t) if t.is_empty()) {
            return Err(ConfigError::Empty("API token"));
        }
        Ok(())
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes: safe to put in `SET search_path` and `CREATE SCHEMA`.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

/// A configuration the service cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required value is empty.
    #[error("the {0} must not be empty")]
    Empty(&'static str),
    /// The DLQ topic is the source topic.
    #[error("the DLQ topic must differ from the source topic `{0}`")]
    DlqIsSource(String),
    /// Batch size 0.
    #[error("the batch size must be at least 1")]
    ZeroBatch,
    /// A schema name that is not a plain identifier.
    #[error(
        "database schema `{0}` is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)"
    )]
    BadSchema(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_bad_values() {
        let ok = Config::new("postgres://x", "b:9092");
        assert_eq!(ok.validate(), Ok(()));
        let mut c = ok.clone();
        c.dlq_topic = c.topic.clone();
        assert!(matches!(c.validate(), Err(ConfigError::DlqIsSource(_))));
        let mut c = ok.clone();
        c.database_schema = Some("x; drop table".into());
        assert!(matches!(c.validate(), Err(ConfigError::BadSchema(_))));
        let mut c = ok.clone();
        c.batch_size = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroBatch));
        let mut c = ok;
        c.api_token = Some(String::new());
        assert_eq!(c.validate(), Err(ConfigError::Empty("API token")));
    }

    #[test]
    fn flags_parse() {
        let c = Config::try_parse_from([
            "svc",
            "--database-url",
            "postgres://db",
            "--assignment",
            "assign-all",
            "--kafka-property",
            "security.protocol=ssl",
        ])
        .expect("parses");
        assert_eq!(c.assignment, Assignment::AssignAll);
        assert_eq!(
            c.kafka_properties,
            vec![("security.protocol".to_owned(), "ssl".to_owned())]
        );
        assert!(
            Config::try_parse_from(["svc", "--database-url", "x", "--kafka-property", "novalue"])
                .is_err()
        );
    }
}
