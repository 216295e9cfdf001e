//! Service configuration: flags and environment variables (`DATABASE_URL`, `KAFKA_BROKERS`, ...).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Parser, ValueEnum};

use saga_tracker_core::codec::{KnownSchemas, RegistryIds};

use crate::metrics::LabelLimits;

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
    about = "saga.tracker -> PostgreSQL, timeline API, Prometheus metrics",
    after_help = crate::ops::cli::COMMANDS_HELP
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
    /// Also accept Confluent-framed messages (`00` + schema id) with this schema registry id, standing for the
    /// current schema version (for several versions: `--registry-schema-ids`).
    #[arg(long, env = "TRACKER_CONFLUENT_SCHEMA_ID")]
    pub confluent_schema_id: Option<u32>,
    /// Also accept Confluent-framed messages whose schema registry id is one of these, `ID=VERSION` pairs
    /// (e.g. `17=1,18=2`): the id picks the writer's schema version. Other ids go to the DLQ as
    /// `unknown_schema_id`.
    #[arg(long, env = "TRACKER_REGISTRY_SCHEMA_IDS")]
    pub registry_schema_ids: Option<RegistryIds>,
    /// Read only these schema versions (e.g. `1`); default: every version this build knows. For staged
    /// upgrades and tests: events written with another version go to the DLQ as `unknown_fingerprint`, and
    /// `dlq redrive` stores them once the tracker reads that version.
    #[arg(long, env = "TRACKER_KNOWN_SCHEMA_VERSIONS", value_delimiter = ',')]
    pub known_schema_versions: Vec<u32>,
    /// The most messages written to the database in one transaction. Each batch rewrites the derived row of every
    /// saga it touches, so larger batches rewrite a saga less often (see BENCHMARKS.md, "Tracker ingest, wave 2").
    #[arg(long, env = "TRACKER_BATCH_SIZE", default_value_t = 5000)]
    pub batch_size: usize,
    /// How long to wait for more messages before writing a partial batch, in milliseconds.
    #[arg(long, env = "TRACKER_BATCH_LINGER_MS", default_value_t = 50)]
    pub batch_linger_ms: u64,
    /// Address of the HTTP API and `/metrics` (loopback by default; `0.0.0.0:8080` to serve other hosts).
    #[arg(long, env = "TRACKER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// When set, every route but `/healthz` and `/metrics` requires `Authorization: Bearer <token>`. Prefer
    /// `--api-token-file` or the environment: a command line is readable by every user of the host.
    #[arg(long, env = "TRACKER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A saga that is not terminal and has recorded nothing for this many minutes counts as stuck.
    #[arg(long, env = "TRACKER_STUCK_AFTER_MINUTES", default_value_t = 15)]
    pub stuck_after_minutes: u32,
    /// How often librdkafka reports statistics (consumer lag), in milliseconds.
    #[arg(long, env = "TRACKER_STATS_INTERVAL_MS", default_value_t = 5000)]
    pub stats_interval_ms: u64,
    /// A file holding the API token (first line; trailing whitespace ignored). Exclusive with `--api-token`.
    #[arg(long, env = "TRACKER_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// When set, `/metrics` requires `Authorization: Bearer <token>` (Prometheus: `authorization` in the scrape
    /// configuration). Prefer `--metrics-token-file` or the environment.
    #[arg(long, env = "TRACKER_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// A file holding the `/metrics` token. Exclusive with `--metrics-token`.
    #[arg(long, env = "TRACKER_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// How many distinct `saga_type` label values the metrics keep; later types are reported as `other`.
    #[arg(long, env = "TRACKER_METRICS_MAX_SAGA_TYPES", default_value_t = LabelLimits::DEFAULT.max_saga_types)]
    pub metrics_max_saga_types: usize,
    /// How many distinct (saga type, step) label pairs the metrics keep; later steps are reported as `other`.
    #[arg(long, env = "TRACKER_METRICS_MAX_STEPS", default_value_t = LabelLimits::DEFAULT.max_steps)]
    pub metrics_max_steps: usize,
    /// How often the database-backed gauges (sagas per state, stuck sagas) are refreshed, in milliseconds.
    #[arg(long, env = "TRACKER_METRICS_REFRESH_MS", default_value_t = 5000)]
    pub metrics_refresh_ms: u64,
    /// A partition whose messages wait without ingestion progress for this many seconds is reported stalled
    /// (`saga_tracker_partition_stalled`, `/healthz` degraded).
    #[arg(long, env = "TRACKER_STALL_AFTER_SECONDS", default_value_t = 60)]
    pub stall_after_seconds: u64,
    /// Batches written to PostgreSQL concurrently (each partition always goes to the same writer, in order).
    #[arg(long, env = "TRACKER_INGEST_LANES", default_value_t = 2)]
    pub ingest_lanes: usize,
    /// Static group membership (`group.instance.id`): a stable name per replica (e.g. the pod name of a
    /// StatefulSet). A replica restarted under the same name gets its partitions back without a rebalance.
    #[arg(long, env = "TRACKER_GROUP_INSTANCE_ID")]
    pub group_instance_id: Option<String>,
    /// The operator console links a trace id to this URL, `{traceId}` replaced by the id (e.g.
    /// `https://tempo.example/trace/{traceId}`); `http://` or `https://` only. Unset: trace ids are plain text.
    #[arg(long, env = "TRACKER_TRACE_URL_TEMPLATE")]
    pub trace_url_template: Option<String>,
    /// Most events stored per saga; further events of a saga that holds this many are dead-lettered with reason
    /// `saga_too_long` (counted in `saga_tracker_dlq_total`), not stored. 0 means no cap.
    #[arg(long, env = "TRACKER_MAX_EVENTS_PER_SAGA", default_value_t = DEFAULT_MAX_EVENTS_PER_SAGA)]
    pub max_events_per_saga: u32,
}

/// The default of `--max-events-per-saga`: a saga of 10,000 events is far beyond any real workflow, and its
/// summary, timeline pages and derived row stay small.
pub const DEFAULT_MAX_EVENTS_PER_SAGA: u32 = 10_000;

/// The secret flags, for [`secrets_on_command_line`].
const SECRET_FLAGS: [(&str, &str); 2] = [
    ("api_token", "--api-token"),
    ("metrics_token", "--metrics-token"),
];

/// The secret flags given on the command line (rather than in the environment or a file), where any user of
/// the host can read them (`/proc/PID/cmdline`, `ps`). The binary warns about each.
pub fn secrets_on_command_line(matches: &ArgMatches) -> Vec<&'static str> {
    SECRET_FLAGS
        .into_iter()
        .filter(|(id, _)| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|(_, flag)| flag)
        .collect()
}

/// A token given directly or in a file: the file's first line, trailing whitespace removed.
fn token(
    what: &'static str,
    direct: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    match (direct, file) {
        (Some(_), Some(_)) => Err(ConfigError::TwoTokenSources(what)),
        (Some(t), None) => Ok(Some(t.to_owned())),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::TokenFile {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            let t = text.lines().next().unwrap_or("").trim_end();
            if t.is_empty() {
                return Err(ConfigError::TokenFile {
                    path: path.to_owned(),
                    reason: "the file is empty".into(),
                });
            }
            Ok(Some(t.to_owned()))
        }
    }
}

pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
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
            registry_schema_ids: None,
            known_schema_versions: Vec::new(),
            batch_size: 5000,
            batch_linger_ms: 50,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_token: None,
            stuck_after_minutes: 15,
            stats_interval_ms: 5000,
            api_token_file: None,
            metrics_token: None,
            metrics_token_file: None,
            metrics_max_saga_types: LabelLimits::DEFAULT.max_saga_types,
            metrics_max_steps: LabelLimits::DEFAULT.max_steps,
            metrics_refresh_ms: 5000,
            stall_after_seconds: 60,
            ingest_lanes: 2,
            group_instance_id: None,
            trace_url_template: None,
            max_events_per_saga: DEFAULT_MAX_EVENTS_PER_SAGA,
        }
    }

    /// The API token: `--api-token` or the first line of `--api-token-file`.
    pub fn resolved_api_token(&self) -> Result<Option<String>, ConfigError> {
        token(
            "API",
            self.api_token.as_deref(),
            self.api_token_file.as_deref(),
        )
    }

    /// The `/metrics` token: `--metrics-token` or the first line of `--metrics-token-file`.
    pub fn resolved_metrics_token(&self) -> Result<Option<String>, ConfigError> {
        token(
            "metrics",
            self.metrics_token.as_deref(),
            self.metrics_token_file.as_deref(),
        )
    }

    /// The label caps of the metrics.
    pub fn label_limits(&self) -> LabelLimits {
        LabelLimits {
            max_saga_types: self.metrics_max_saga_types,
            max_steps: self.metrics_max_steps,
        }
    }

    /// What the decoder accepts: `--known-schema-versions` (all by default), and the Confluent ids of
    /// `--registry-schema-ids` and `--confluent-schema-id`.
    pub fn known_schemas(&self) -> Result<KnownSchemas, ConfigError> {
        known_schemas(
            &self.known_schema_versions,
            self.registry_schema_ids.as_ref(),
            self.confluent_schema_id,
        )
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
        if self.ingest_lanes == 0 {
            return Err(ConfigError::ZeroLanes);
        }
        if matches!(&self.group_instance_id, Some(id) if id.trim().is_empty()) {
            return Err(ConfigError::Empty("group instance id"));
        }
        if let Some(schema) = &self.database_schema
            && !is_identifier(schema)
        {
            return Err(ConfigError::BadSchema(schema.clone()));
        }
        if matches!(&self.api_token, Some(t) if t.is_empty()) {
            return Err(ConfigError::Empty("API token"));
        }
        if matches!(&self.metrics_token, Some(t) if t.is_empty()) {
            return Err(ConfigError::Empty("metrics token"));
        }
        if self.api_token.is_some() && self.api_token_file.is_some() {
            return Err(ConfigError::TwoTokenSources("API"));
        }
        if self.metrics_token.is_some() && self.metrics_token_file.is_some() {
            return Err(ConfigError::TwoTokenSources("metrics"));
        }
        if self.metrics_refresh_ms == 0 {
            return Err(ConfigError::Empty("metrics refresh interval"));
        }
        self.known_schemas()?;
        if let Some(template) = &self.trace_url_template {
            crate::console::check_trace_template(template).map_err(ConfigError::TraceTemplate)?;
        }
        Ok(())
    }
}

/// The decoder's schemas from the flags shared by the service and the operations commands: the versions
/// (empty = all), the registry ids, and the single id of `--confluent-schema-id` (the current version).
pub(crate) fn known_schemas(
    versions: &[u32],
    registry_ids: Option<&RegistryIds>,
    confluent_schema_id: Option<u32>,
) -> Result<KnownSchemas, ConfigError> {
    let schemas = if versions.is_empty() {
        KnownSchemas::all()
    } else {
        KnownSchemas::only(versions).map_err(|e| ConfigError::Schemas(e.to_string()))?
    };
    let mut ids = registry_ids.cloned().unwrap_or_default();
    if let Some(id) = confluent_schema_id {
        ids = ids
            .merge(&RegistryIds::current(id))
            .map_err(|e| ConfigError::Schemas(e.to_string()))?;
    }
    schemas
        .with_registry_ids(ids)
        .map_err(|e| ConfigError::Schemas(e.to_string()))
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
    /// No ingest lane.
    #[error("the number of ingest lanes must be at least 1")]
    ZeroLanes,
    /// A schema name that is not a plain identifier.
    #[error(
        "database schema `{0}` is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes)"
    )]
    BadSchema(String),
    /// Schema versions or registry ids the decoder cannot be built with.
    #[error("schemas: {0}")]
    Schemas(String),
    /// A token given both directly and as a file.
    #[error("the {0} token is given both directly and as a file; give one")]
    TwoTokenSources(&'static str),
    /// A token file that cannot be read or is empty.
    #[error("cannot read the token file {}: {reason}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A `--trace-url-template` the console cannot use.
    #[error("--trace-url-template: {0}")]
    TraceTemplate(&'static str),
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
        let mut c = ok.clone();
        c.ingest_lanes = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroLanes));
        let mut c = ok.clone();
        c.group_instance_id = Some(" ".into());
        assert_eq!(c.validate(), Err(ConfigError::Empty("group instance id")));
        let mut c = ok.clone();
        c.api_token = Some(String::new());
        assert_eq!(c.validate(), Err(ConfigError::Empty("API token")));
        let mut c = ok;
        c.api_token = Some("a".into());
        c.api_token_file = Some("/nonexistent".into());
        assert_eq!(c.validate(), Err(ConfigError::TwoTokenSources("API")));
    }

    #[test]
    fn schema_flags_build_the_decoder() {
        let c = Config::try_parse_from([
            "svc",
            "--database-url",
            "x",
            "--registry-schema-ids",
            "17=1,18=2",
            "--confluent-schema-id",
            "18",
        ])
        .expect("parses");
        let schemas = c.known_schemas().expect("valid");
        assert_eq!(
            schemas.to_string(),
            "versions v1,v2; registry ids 17=v1,18=v2"
        );
        let c =
            Config::try_parse_from(["svc", "--database-url", "x", "--known-schema-versions", "1"])
                .expect("parses");
        assert_eq!(
            c.known_schemas().expect("valid").to_string(),
            "versions v1; registry ids none"
        );
        let mut c = Config::new("x", "y");
        c.known_schema_versions = vec![1];
        c.confluent_schema_id = Some(7);
        assert!(
            matches!(c.validate(), Err(ConfigError::Schemas(_))),
            "id 7 is v2, unknown to a v1 reader"
        );
        assert!(
            Config::try_parse_from([
                "svc",
                "--database-url",
                "x",
                "--registry-schema-ids",
                "17=9"
            ])
            .is_err()
        );
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let c = Config::try_parse_from(["svc", "--database-url", "x"]).expect("parses");
        assert!(c.listen.ip().is_loopback(), "{}", c.listen);
        assert_eq!(c.listen, Config::new("x", "y").listen);
    }

    #[test]
    fn tokens_from_files_and_the_command_line_warning() {
        let dir = std::env::temp_dir().join(format!("svc-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("token");
        std::fs::write(&file, "s3cret \nignored\n").expect("write");
        let mut c = Config::new("x", "y");
        c.api_token_file = Some(file.clone());
        assert_eq!(c.resolved_api_token(), Ok(Some("s3cret".into())));
        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(
            c.resolved_api_token(),
            Err(ConfigError::TokenFile { .. })
        ));
        c.api_token_file = Some(dir.join("missing"));
        assert!(matches!(
            c.resolved_api_token(),
            Err(ConfigError::TokenFile { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);

        use clap::CommandFactory as _;
        let matches = Config::command()
            .try_get_matches_from(["svc", "--database-url", "x", "--api-token", "t"])
            .expect("parses");
        assert_eq!(secrets_on_command_line(&matches), vec!["--api-token"]);
        let matches = Config::command()
            .try_get_matches_from(["svc", "--database-url", "x"])
            .expect("parses");
        assert!(secrets_on_command_line(&matches).is_empty());
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
        let c = Config::try_parse_from([
            "svc",
            "--database-url",
            "x",
            "--trace-url-template",
            "https://tempo.example/trace/{traceId}",
        ])
        .expect("parses");
        assert_eq!(
            c.trace_url_template.as_deref(),
            Some("https://tempo.example/trace/{traceId}")
        );
        assert!(c.validate().is_ok());
    }
}
