//! The operations subcommands of `saga-tracker-service` (flags, and printing each command's summary).

use clap::{Args, Subcommand};
use sqlx::PgPool;

use super::OpsError;
use super::archive::{self, ArchiveOptions};
use super::cold::ColdStore;
use super::day::parse_day;
use super::restore::{self, RestoreOptions};
use crate::db::Store;

/// An operations subcommand.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create day partitions ahead, export days older than the retention to cold storage (one Avro file per
    /// day), verify each export by reading it back, then drop its partition.
    Archive(ArchiveArgs),
    /// Load archived days (or one saga of them) back; the API serves them again, marked `restored`.
    Restore(RestoreArgs),
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
        let store = Store::connect(&self.database_url, self.database_schema.as_deref(), 2).await?;
        Ok(store.pool().clone())
    }
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
                println!(
                    "  {}  {} rows -> {} ({} events, verified), partition dropped",
                    d.day, d.partition_rows, d.path, d.archived_events
                );
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
    }
}
