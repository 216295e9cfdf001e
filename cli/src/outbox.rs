//! `saga-tracker outbox relay`: publishes `saga_tracker_outbox` to Kafka until interrupted (feature `outbox`).

use std::time::Duration;

use clap::Subcommand;
use saga_tracker::KafkaSink;
use saga_tracker::outbox::{Relay, RelayConfig};

/// Outbox commands.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Publish committed outbox rows to Kafka and mark them published once acknowledged (runs until Ctrl-C or
    /// SIGTERM; any number of relays may run on one table).
    Relay {
        /// The service's PostgreSQL database (the outbox in its current schema).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Kafka bootstrap servers (`host:port[,host:port...]`).
        #[arg(long, env = "SAGA_TRACKER_BROKERS")]
        brokers: String,
        /// The topic.
        #[arg(long, default_value = "saga.tracker")]
        topic: String,
        /// Rows claimed per round.
        #[arg(long, default_value_t = 1000)]
        batch_size: u32,
        /// Seconds between polls when no notification arrives.
        #[arg(long, default_value_t = 1)]
        poll_secs: u64,
        /// Days a fully published day's partition is kept (0 = retention off).
        #[arg(long, default_value_t = 7)]
        retention_days: u32,
        /// Run the outbox migrations first.
        #[arg(long)]
        migrate: bool,
    },
}

/// Runs an outbox command; `Ok(true)` when it ended cleanly.
pub fn run(command: OutboxCommand) -> Result<bool, String> {
    let OutboxCommand::Relay {
        database_url,
        brokers,
        topic,
        batch_size,
        poll_secs,
        retention_days,
        migrate,
    } = command;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(3)
            .connect(&database_url)
            .await
            .map_err(|e| format!("cannot connect to the database: {e}"))?;
        if migrate {
            saga_tracker::outbox::migrate(&pool)
                .await
                .map_err(|e| format!("outbox migrations: {e}"))?;
        }
        let sink = KafkaSink::builder(brokers)
            .topic(topic)
            .message_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let relay = Relay::new(pool, sink).config(RelayConfig {
            batch_size,
            poll_interval: Duration::from_secs(poll_secs.max(1)),
            retention_days: (retention_days > 0).then_some(retention_days),
            ..RelayConfig::default()
        });
        relay
            .run(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok(true)
    })
}
