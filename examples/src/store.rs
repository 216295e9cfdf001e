//! `--outbox`: the services' state in PostgreSQL tables, the transactional outbox beside them, and the relay
//! that publishes it to `saga.tracker`.
//!
//! The run creates a schema of its own, `saga_demo_outbox_<run id>`, holding the demo's tables (orders, stock,
//! reservations, wallets, payments: [`SCHEMA`]) and the runtime's `saga_tracker_outbox` (its migrations). Each
//! handler in [`crate::services::stored`] changes those tables and writes its step's STARTED and SUCCEEDED into
//! the same transaction ([`saga_tracker::outbox::StepInTx`]); a failed step rolls back and its FAILED goes
//! through the service's tracker directly. A [`Relay`] (the library type) runs beside the services and publishes
//! the committed rows.

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use saga_tracker::KafkaSink;
use saga_tracker::outbox::{Relay, RelayConfig};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::bus::{Kafka, TRACKER_TOPIC};
use crate::error::DemoError;
use crate::saga::{BROKE_CUSTOMER, LEGACY_SKU, PAYING_CUSTOMERS, REGULAR_SKUS};
use crate::services::payment::INITIAL_BALANCE_CENTS;
use crate::services::product::INITIAL_STOCK;

/// The demo's business tables (created in the run's schema).
pub const SCHEMA: &str = "
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    saga_id  TEXT NOT NULL,
    status   TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED'))
);
CREATE TABLE stock (
    sku       TEXT PRIMARY KEY,
    available BIGINT NOT NULL CHECK (available >= 0)
);
CREATE TABLE reservations (
    saga_id  TEXT PRIMARY KEY,
    sku      TEXT NOT NULL REFERENCES stock (sku),
    qty      INTEGER NOT NULL,
    released BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE wallets (
    customer      TEXT PRIMARY KEY,
    balance_cents BIGINT NOT NULL
);
CREATE TABLE payments (
    saga_id      TEXT PRIMARY KEY,
    customer     TEXT NOT NULL REFERENCES wallets (customer),
    amount_cents BIGINT NOT NULL,
    refunded     BOOLEAN NOT NULL DEFAULT false
);
";

/// How long the relay may take to publish what the services committed, once they stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What `--outbox` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOptions {
    /// The PostgreSQL database holding the run's schema.
    pub database_url: String,
    /// Keep the run's schema instead of dropping it at the end (`--keep-outbox-data`).
    pub keep_data: bool,
}

/// What the outbox did in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxReport {
    /// The run's schema.
    pub schema: String,
    /// Rows written to `saga_tracker_outbox` (committed events).
    pub rows: i64,
    /// Of those, published by the relay.
    pub published: i64,
    /// Whether the schema was kept.
    pub kept: bool,
}

/// The run's database: its schema, a pool whose `search_path` is that schema, and the running relay.
#[derive(Debug)]
pub struct Store {
    /// Connections into the run's schema.
    pub pool: PgPool,
    schema: String,
    admin: PgPool,
    relay: Option<RunningRelay>,
}

/// The relay task and what stops it.
#[derive(Debug)]
struct RunningRelay {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), DemoError>>,
}

fn database_error(url: &str, reason: impl std::fmt::Display) -> DemoError {
    DemoError::OutboxDatabase {
        url: crate::central_tracker::redact_url(url),
        reason: reason.to_string(),
    }
}

impl Store {
    /// Creates schema `saga_demo_outbox_<run_id>` with the outbox and the demo's tables, fills stock and
    /// wallets, and starts a relay publishing to `saga.tracker` on `kafka`.
    pub async fn start(
        options: &OutboxOptions,
        kafka: &Kafka,
        run_id: &str,
        connections: u32,
    ) -> Result<Store, DemoError> {
        let url = &options.database_url;
        let schema = format!("saga_demo_outbox_{run_id}");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| database_error(url, e))?;
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&admin)
            .await
            .map_err(|e| database_error(url, e))?;
        let mut store = Store {
            pool: admin.clone(),
            schema,
            admin,
            relay: None,
        };
        match store.fill(url, kafka, connections).await {
            Ok(()) => Ok(store),
            Err(e) => {
                let _ = store.drop_schema().await;
                Err(e)
            }
        }
    }

    async fn fill(&mut self, url: &str, kafka: &Kafka, connections: u32) -> Result<(), DemoError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| database_error(url, e))?
            .options([("search_path", self.schema.as_str())]);
        // The services' transactions, plus the relay's two rounds in flight and its LISTEN.
        self.pool = PgPoolOptions::new()
            .max_connections(connections + 3)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| database_error(url, e))?;
        saga_tracker::outbox::migrate(&self.pool)
            .await
            .map_err(|e| database_error(url, e))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&self.pool)
            .await
            .map_err(|e| database_error(url, e))?;
        let skus: Vec<&str> = REGULAR_SKUS.iter().copied().chain([LEGACY_SKU]).collect();
        sqlx::query(
            "INSERT INTO stock (sku, available) SELECT sku, $2 FROM unnest($1::text[]) sku",
        )
        .bind(&skus)
        .bind(INITIAL_STOCK as i64)
        .execute(&self.pool)
        .await
        .map_err(|e| database_error(url, e))?;
        sqlx::query(
            "INSERT INTO wallets (customer, balance_cents) \
             SELECT c, $2 FROM unnest($1::text[]) c UNION ALL SELECT $3, 0",
        )
        .bind(&PAYING_CUSTOMERS[..])
        .bind(INITIAL_BALANCE_CENTS)
        .bind(BROKE_CUSTOMER)
        .execute(&self.pool)
        .await
        .map_err(|e| database_error(url, e))?;

        let sink = KafkaSink::builder(kafka.brokers())
            .topic(TRACKER_TOPIC)
            .message_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| DemoError::Tracker(format!("outbox relay: {e}")))?;
        let relay = Relay::new(self.pool.clone(), sink).config(RelayConfig {
            poll_interval: Duration::from_millis(500),
            ..RelayConfig::default()
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .map_err(|e| DemoError::Tracker(e.to_string()))
        });
        self.relay = Some(RunningRelay { stop, task });
        Ok(())
    }

    /// The run's schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Waits until the relay published every committed row (the services have stopped), stops it, and drops
    /// the schema unless `keep_data`.
    pub async fn finish(mut self, keep_data: bool) -> Result<OutboxReport, DemoError> {
        let drained = self.wait_published().await;
        if let Some(RunningRelay { stop, task }) = self.relay.take() {
            let _ = stop.send(());
            match task.await {
                Ok(result) => result?,
                Err(e) => return Err(DemoError::Internal(format!("outbox relay task: {e}"))),
            }
        }
        let report = drained.map(|(rows, published)| OutboxReport {
            schema: self.schema.clone(),
            rows,
            published,
            kept: keep_data,
        });
        self.pool.close().await;
        if !keep_data {
            self.drop_schema().await.map_err(|e| {
                DemoError::Internal(format!("cannot drop schema {}: {e}", self.schema))
            })?;
        }
        report
    }

    /// Waits until nothing waits in the outbox (the services have stopped): (rows, published), or an error
    /// after a minute.
    pub async fn wait_published(&self) -> Result<(i64, i64), DemoError> {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let (rows, published, waiting): (i64, i64, i64) = sqlx::query_as(
                "SELECT count(*), count(published_at), \
                     count(*) FILTER (WHERE published_at IS NULL AND failed_at IS NULL) \
                 FROM saga_tracker_outbox",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(|e| DemoError::Internal(format!("reading the outbox: {e}")))?;
            if waiting == 0 {
                return Ok((rows, published));
            }
            if Instant::now() >= deadline {
                return Err(DemoError::Tracker(format!(
                    "the outbox relay left {waiting} of {rows} rows unpublished after {DRAIN_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn drop_schema(&self) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .execute(&self.admin)
            .await
            .map(drop)
    }
}
