//! The operations subcommands of `saga-tracker-service` (flags, and printing each command's summary).

use clap::{Args, Parser, Subcommand};
use sqlx::PgPool;

use super::OpsError;
use super::archive::{self, ArchiveOptions};
use super::cold::ColdStore;
use super::day::{parse_day, parse_time};
use super::reconcile::{self, ReconcileOptions};
use super::redrive::{self, RedriveOptions};
use super::replay::{self, ReplayOptions};
use super::restore::{self, RestoreOptions};
use super::topics::{self, TopicsOptions};
use crate::db::Store;

/// The operations, as `saga-tracker-service <COMMAND>`.
#[derive(Debug, Clone, Parser)]
#[command(name = "saga-tracker-service", version)]
pub struct OpsCli {
    /// The operation.
    #[command(subcommand)]
    pub command: Command,
}

/// The first arguments that select an operation instead of running the service.
pub const COMMANDS: [&str; 6] = ["archive", "restore", "replay", "reconcile", "topics", "dlq"];

/// Listed under the service's `--help`.
pub const COMMANDS_HELP: &str =
    "Operations (instead of running the service; each has --help; exit 0 done, \
1 a problem found, 2 bad input):
  archive      export days older than the retention to cold storage, verify, drop their partitions
  restore      load archived days (or one saga) back, marked restored
  replay       rewind the consumer group to a time (or re-ingest a time range)
  dlq redrive  ingest what in the DLQ now decodes; send the rest back, counted per reason
  topics ensure  create saga.tracker and the DLQ with the retention policy; report drift
  reconcile    compare the services' outbox tables with the tracker for a day";

/// True when `arg` names an operation.
pub fn is_command(arg: &str) -> bool {
    COMMANDS.contains(&arg)
}

/// An operations subcommand.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create day partitions ahead, export days older than the retention to cold storage (one Avro file per
    /// day), verify each export by reading it back, then drop its partition.
    Archive(ArchiveArgs),
    /// Load archived days (or one saga of them) back; the API serves them again, marked `restored`.
    Restore(RestoreArgs),
    /// Rewind the tracker's consumer group to a point in time (or, with --to, re-ingest a time range).
    Replay(ReplayArgs),
    /// Compare the services' outbox tables with the tracker for one UTC day (R9); exit 1 on a discrepancy.
    Reconcile(ReconcileArgs),
    /// Kafka topic operations.
    Topics {
        /// What to do with the topics.
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Dead-letter queue operations.
    Dlq {
        /// What to do with the DLQ.
        #[command(subcommand)]
        command: DlqCommand,
    },
}

/// `topics` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TopicsCommand {
    /// Create saga.tracker and the DLQ (retention.ms 30 days, cleanup.policy=delete) through the admin API;
    /// on existing topics report drift from that policy, and change them only with --apply.
    Ensure(TopicsArgs),
}

/// Flags of `topics ensure`.
#[derive(Debug, Clone, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Partitions of saga.tracker.
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Partitions of the DLQ.
    #[arg(long, default_value_t = 1)]
    dlq_partitions: i32,
    /// Replication factor of new topics; -1 = the broker's default.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    replication_factor: i32,
    /// retention.ms of both topics, in days.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    retention_days: u32,
    /// Change existing topics to the policy (configs; partitions can only grow).
    #[arg(long)]
    apply: bool,
    /// Seconds to wait for each admin request.
    #[arg(long, default_value_t = 15)]
    timeout_secs: u64,
}

/// `dlq` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// Ingest what in saga.tracker.dlq now decodes and validates; send the rest back to the DLQ, counted per
    /// reason. Progress is committed, so it can run again.
    Redrive(RedriveArgs),
}

/// The Kafka side.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "localhost:9092")]
    pub kafka_brokers: String,
    /// The topic the services publish to.
    #[arg(long, env = "TRACKER_TOPIC", default_value = "saga.tracker")]
    pub topic: String,
    /// The dead-letter topic.
    #[arg(long, env = "TRACKER_DLQ_TOPIC", default_value = "saga.tracker.dlq")]
    pub dlq_topic: String,
    /// The tracker's consumer group.
    #[arg(long, env = "TRACKER_GROUP_ID", default_value = "saga-tracker-service")]
    pub group_id: String,
    /// Also accept Confluent-framed messages with this schema registry id (the current schema version).
    #[arg(long, env = "TRACKER_CONFLUENT_SCHEMA_ID")]
    pub confluent_schema_id: Option<u32>,
    /// Also accept Confluent-framed messages with these schema registry ids, `ID=VERSION` pairs (`17=1,18=2`).
    #[arg(long, env = "TRACKER_REGISTRY_SCHEMA_IDS")]
    pub registry_schema_ids: Option<saga_tracker_core::codec::RegistryIds>,
    /// Read only these schema versions; default: every version this build knows.
    #[arg(long, env = "TRACKER_KNOWN_SCHEMA_VERSIONS", value_delimiter = ',')]
    pub known_schema_versions: Vec<u32>,
    /// Extra librdkafka properties, `key=value` (repeat).
    #[arg(long = "kafka-property", value_parser = crate::config::parse_key_value)]
    pub kafka_properties: Vec<(String, String)>,
}

impl KafkaArgs {
    /// What the decoder accepts, from the schema flags.
    pub fn known_schemas(&self) -> Result<saga_tracker_core::codec::KnownSchemas, OpsError> {
        crate::config::known_schemas(
            &self.known_schema_versions,
            self.registry_schema_ids.as_ref(),
            self.confluent_schema_id,
        )
        .map_err(|e| OpsError::Input(e.to_string()))
    }
}

/// Flags of `replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// From this time, RFC 3339 (Kafka message timestamps).
    #[arg(long, value_parser = parse_time)]
    from: chrono::DateTime<chrono::Utc>,
    /// Up to this time (exclusive): the command re-ingests the range itself and leaves the group alone.
    #[arg(long, value_parser = parse_time)]
    to: Option<chrono::DateTime<chrono::Utc>>,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Markdown,
    /// For machines.
    Json,
}

/// Flags of `reconcile`.
#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The UTC day: YYYY-MM-DD, `yesterday` or `today`.
    #[arg(long, value_parser = parse_day, default_value = "yesterday")]
    day: chrono::NaiveDate,
    /// A service database holding `saga_tracker_outbox` (repeat per service); `?options[search_path]=s`
    /// selects a schema.
    #[arg(
        long = "outbox-database-url",
        env = "TRACKER_OUTBOX_DATABASE_URLS",
        value_delimiter = ' '
    )]
    outbox_database_urls: Vec<String>,
    /// A saga not terminal and silent for this many minutes counts as stuck.
    #[arg(long, env = "TRACKER_STUCK_AFTER_MINUTES", default_value_t = 15)]
    stuck_after_minutes: u32,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
}

/// Flags of `dlq redrive`.
#[derive(Debug, Clone, Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Only messages dead-lettered for this reason (`dlq.reason`, e.g. unknown_fingerprint).
    #[arg(long)]
    reason: Option<String>,
    /// The consumer group holding the re-drive's progress.
    #[arg(long, default_value = "saga-tracker-dlq-redrive")]
    redrive_group: String,
}

/// The tracker database.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// PostgreSQL connection URL of the tracker.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// PostgreSQL schema holding the tracker's tables; empty = the server's search_path.
    #[arg(long, env = "DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
}

impl DbArgs {
    /// Connects and migrates (exit 2 when unreachable).
    pub async fn connect(&self) -> Result<PgPool, OpsError> {
        Ok(self.store().await?.pool().clone())
    }

    /// The store (exit 2 when unreachable).
    pub async fn store(&self) -> Result<Store, OpsError> {
        Ok(Store::connect(&self.database_url, self.database_schema.as_deref(), 2).await?)
    }
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Flags of `archive`.
#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Days kept online; older days are archived and dropped.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..))]
    retention_days: u32,
    /// Day partitions created ahead of today.
    #[arg(long, default_value_t = 7)]
    ahead_days: u32,
    /// A day loaded back by `restore` stays online this many days.
    #[arg(long, default_value_t = 7)]
    keep_restored_days: u32,
    /// Cold storage: `file:///path` or `s3://bucket/prefix` (credentials from AWS_* variables).
    #[arg(long, env = "TRACKER_ARCHIVE_URL")]
    archive_url: String,
}

/// Flags of `restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    db: DbArgs,
    /// First day to load, YYYY-MM-DD (UTC).
    #[arg(long, value_parser = parse_day)]
    from: chrono::NaiveDate,
    /// Last day to load, inclusive.
    #[arg(long, value_parser = parse_day)]
    to: chrono::NaiveDate,
    /// Only this saga's events.
    #[arg(long)]
    saga_id: Option<String>,
    /// Cold storage: `file:///path` or `s3://bucket/prefix`.
    #[arg(long, env = "TRACKER_ARCHIVE_URL")]
    archive_url: String,
}

/// Runs `command`, printing its summary on stdout. The exit code: 0 done, 1 a problem found, 2 bad input.
pub async fn run(command: Command) -> u8 {
    match execute(command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("saga-tracker-service: {e}");
            e.exit_code()
        }
    }
}

async fn execute(command: Command) -> Result<u8, OpsError> {
    match command {
        Command::Archive(a) => {
            let cold = ColdStore::open(&a.archive_url)?;
            let pool = a.db.connect().await?;
            let options = ArchiveOptions {
                retention_days: a.retention_days,
                ahead_days: a.ahead_days,
                keep_restored_days: a.keep_restored_days,
            };
            let s = archive::run(&pool, &cold, &options).await?;
            println!(
                "archive: retention {} days, {} partitions created ahead",
                options.retention_days, s.partitions_created
            );
            for d in &s.archived {
                if d.archived_events == 0 {
                    println!("  {}  empty, partition dropped (no file)", d.day);
                } else {
                    println!(
                        "  {}  {} rows -> {} ({} events, verified), partition dropped",
                        d.day, d.partition_rows, d.path, d.archived_events
                    );
                }
            }
            for d in &s.kept_restored {
                println!("  {d}  kept online (restored recently)");
            }
            println!(
                "archived {} days, {} events",
                s.archived.len(),
                s.archived.iter().map(|d| d.partition_rows).sum::<u64>()
            );
            Ok(0)
        }
        Command::Restore(r) => {
            let cold = ColdStore::open(&r.archive_url)?;
            let pool = r.db.connect().await?;
            let s = restore::run(
                &pool,
                &cold,
                &RestoreOptions {
                    from: r.from,
                    to: r.to,
                    saga_id: r.saga_id,
                },
            )
            .await?;
            if !s.days_missing.is_empty() {
                let missing: Vec<String> = s.days_missing.iter().map(|d| d.to_string()).collect();
                println!("  no archive for {}", missing.join(", "));
            }
            println!(
                "restored {} days: {} events read, {} inserted ({} online already), {} sagas recomputed",
                s.days_found.len(),
                s.events_read,
                s.events_inserted,
                s.events_read - s.events_inserted,
                s.sagas
            );
            Ok(0)
        }
        Command::Replay(r) => {
            let store = r.db.store().await?;
            let schemas = r.kafka.known_schemas()?;
            let options = ReplayOptions {
                brokers: r.kafka.kafka_brokers,
                topic: r.kafka.topic,
                group: r.kafka.group_id,
                from: r.from,
                to: r.to,
                schemas,
                kafka_properties: r.kafka.kafka_properties,
            };
            let s = replay::run(&store, &options).await?;
            println!("partition  committed  from-offset  to-offset  committed-after");
            let show = |o: Option<i64>| o.map_or_else(|| "-".to_owned(), |n| n.to_string());
            for p in &s.partitions {
                println!(
                    "{:>9}  {:>9}  {:>11}  {:>9}  {:>15}",
                    p.partition,
                    show(p.committed_before),
                    p.from_offset,
                    p.to_offset,
                    show(p.committed_after)
                );
            }
            if options.to.is_none() {
                println!(
                    "group `{}` rewound to {}: the tracker re-reads from there when it starts (duplicates absorbed)",
                    options.group, options.from
                );
            } else {
                println!(
                    "replayed {} messages: {} stored, {} already stored, rejected: {}",
                    s.read,
                    s.ingested,
                    s.duplicates,
                    counts(&s.rejected)
                );
            }
            Ok(0)
        }
        Command::Reconcile(r) => {
            let pool = r.db.connect().await?;
            let report = reconcile::run(
                &pool,
                &ReconcileOptions {
                    day: r.day,
                    outbox_urls: r.outbox_database_urls,
                    stuck_after: std::time::Duration::from_secs(
                        u64::from(r.stuck_after_minutes) * 60,
                    ),
                },
            )
            .await?;
            match r.format {
                Format::Markdown => print!("{}", reconcile::markdown(&report)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_else(|e| e.to_string())
                ),
            }
            Ok(if report.ok { 0 } else { 1 })
        }
        Command::Topics {
            command: TopicsCommand::Ensure(t),
        } => {
            let reports = topics::ensure(&TopicsOptions {
                brokers: t.kafka.kafka_brokers,
                kafka_properties: t.kafka.kafka_properties,
                topic: (t.kafka.topic, t.partitions),
                dlq_topic: (t.kafka.dlq_topic, t.dlq_partitions),
                replication_factor: t.replication_factor,
                retention_days: t.retention_days,
                apply: t.apply,
                timeout: std::time::Duration::from_secs(t.timeout_secs),
            })
            .await?;
            let mut pending = 0;
            for r in &reports {
                if r.created {
                    println!("{}: created", r.topic);
                } else if r.drift.is_empty() {
                    println!("{}: as the policy says", r.topic);
                }
                for d in &r.drift {
                    pending += usize::from(!d.applied);
                    println!(
                        "{}: {} is {}, policy {}{}",
                        r.topic,
                        d.setting,
                        d.actual,
                        d.expected,
                        if d.applied { " -> changed" } else { "" }
                    );
                }
            }
            if pending > 0 && !t.apply {
                println!("{pending} differences left unchanged; run with --apply to change them");
            }
            Ok(0)
        }
        Command::Dlq {
            command: DlqCommand::Redrive(r),
        } => {
            let store = r.db.store().await?;
            let schemas = r.kafka.known_schemas()?;
            let s = redrive::run(
                &store,
                &RedriveOptions {
                    brokers: r.kafka.kafka_brokers,
                    dlq_topic: r.kafka.dlq_topic,
                    group: r.redrive_group,
                    reason: r.reason,
                    schemas,
                    kafka_properties: r.kafka.kafka_properties,
                },
            )
            .await?;
            println!(
                "re-drove {} DLQ messages and {} dead letters kept in saga_dlq_local: {} stored, {} already stored; still dead-lettered: {}; skipped (other reasons): {}; kept rows moved to the DLQ topic: {}, still kept: {}",
                s.read,
                s.local_read,
                s.ingested,
                s.duplicates,
                counts(&s.still_dead),
                counts(&s.skipped),
                s.local_to_topic,
                s.local_kept
            );
            Ok(0)
        }
    }
}
