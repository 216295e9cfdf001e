//! The relay: publishes committed outbox rows to Kafka and marks them published once acknowledged.
//!
//! One round ([`Relay::run_once`]) is one PostgreSQL transaction: it claims up to `batch_size` unpublished rows
//! with `SELECT … FOR UPDATE SKIP LOCKED` (oldest first), hands them to the [`KafkaSink`], waits for every
//! delivery report, sets `published_at` on the acknowledged rows and commits. Rows are chosen by their lock and
//! their `published_at`, never by a "highest id/time seen" mark, so a row committed late or out of order (a long
//! transaction) is still picked up. Other relays skip the locked rows, so they publish disjoint batches; a relay
//! that dies mid-round releases its locks with its connection and its whole batch, acknowledged or not, is
//! claimed again: duplicates are possible only for that batch, and they carry the same eventId (the tracker
//! deduplicates by it).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::types::Json;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

use super::CHANNEL;
use crate::sink::{Delivery, Envelope, KafkaSink, Sink};

/// How a relay works; [`Default`] gives the values documented on each field.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows claimed per round (default 1000).
    pub batch_size: u32,
    /// How long to wait for a notification before looking anyway (default 1 s).
    pub poll_interval: Duration,
    /// The first wait after a failed round (default 100 ms); doubled per failed round up to `backoff_max`.
    pub backoff_initial: Duration,
    /// The longest wait between failed rounds (default 30 s).
    pub backoff_max: Duration,
    /// How long a round waits for the broker's delivery reports before leaving the rest unpublished (default
    /// 60 s; keep it above the sink's `message.timeout.ms`).
    pub ack_timeout: Duration,
    /// How often partitions are created ahead and retention runs (default 1 h; also at start).
    pub maintenance_interval: Duration,
    /// Days of partitions kept ahead (default 7).
    pub partitions_ahead: u32,
    /// Days a day's partition is kept after the day ended, once all its rows are published (default 7; 7–14 is
    /// the usual range). `None` turns retention off.
    pub retention_days: Option<u32>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 1000,
            poll_interval: Duration::from_secs(1),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(60),
            maintenance_interval: Duration::from_secs(3600),
            partitions_ahead: 7,
            retention_days: Some(7),
        }
    }
}

/// Why a relay round or the relay failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A database call failed (the round's rows stay unpublished and are claimed again).
    #[error("outbox relay: database: {0}")]
    Database(#[from] sqlx::Error),
    /// The configuration is unusable.
    #[error("outbox relay: {0}")]
    Config(String),
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Rows claimed.
    pub claimed: usize,
    /// Rows acknowledged by the broker and marked published.
    pub published: usize,
    /// Rows that failed this time (transport errors, no report in time); claimed again later.
    pub retry: usize,
    /// Rows given up for good (`failed_at` set, reason in `last_error`): a permanent error such as a message
    /// larger than the broker accepts, or a row no broker could take (empty key or payload).
    pub given_up: usize,
}

/// Publishes `saga_tracker_outbox` to Kafka. Several relays may run on one table.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use saga_tracker::KafkaSink;
/// use saga_tracker::outbox::{Relay, RelayConfig};
/// let pool = sqlx::PgPool::connect("postgres://app@db/orders").await?;
/// let sink = KafkaSink::builder("kafka-1:9092").message_timeout(std::time::Duration::from_secs(30)).build()?;
/// let relay = Relay::new(pool, sink).config(RelayConfig::default());
/// relay.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Relay {
    pool: PgPool,
    sink: Arc<KafkaSink>,
    config: RelayConfig,
}

/// A claimed row.
struct Claimed {
    event_id: Uuid,
    created_at: DateTime<Utc>,
    saga_id: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
}

/// The outcome of one claimed row.
enum Outcome {
    Published,
    Retry(String),
    GiveUp(String),
}

const CLAIM: &str = "SELECT event_id, created_at, saga_id, payload, headers \
     FROM saga_tracker_outbox \
     WHERE published_at IS NULL AND failed_at IS NULL \
     ORDER BY created_at \
     LIMIT $1 \
     FOR UPDATE SKIP LOCKED";

impl Relay {
    /// A relay over `pool`'s database (the outbox in its current schema) publishing through `sink`.
    pub fn new(pool: PgPool, sink: KafkaSink) -> Relay {
        Relay {
            pool,
            sink: Arc::new(sink),
            config: RelayConfig::default(),
        }
    }

    /// Sets the configuration.
    pub fn config(mut self, config: RelayConfig) -> Relay {
        self.config = config;
        self
    }

    /// One round: claims a batch, publishes it, marks what the broker acknowledged, commits.
    pub async fn run_once(&self) -> Result<BatchReport, RelayError> {
        if self.config.batch_size == 0 {
            return Err(RelayError::Config("batch_size must be at least 1".into()));
        }
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(CLAIM)
            .bind(i64::from(self.config.batch_size))
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(BatchReport::default());
        }
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let headers: Json<serde_json::Value> = row.try_get("headers")?;
            claimed.push(Claimed {
                event_id: row.try_get("event_id")?,
                created_at: row.try_get("created_at")?,
                saga_id: row.try_get("saga_id")?,
                payload: row.try_get("payload")?,
                traceparent: headers
                    .0
                    .get("traceparent")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
            });
        }
        let outcomes = self.publish(&claimed).await;
        let report = self.mark(&mut tx, &claimed, &outcomes).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Hands every row to the sink and collects the delivery reports (or a retry for those without one in time).
    async fn publish(&self, claimed: &[Claimed]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = (0..claimed.len()).map(|_| None).collect();
        let (report_tx, mut reports) =
            tokio::sync::mpsc::unbounded_channel::<(usize, Result<(), String>)>();
        let mut waiting = 0usize;
        for (index, row) in claimed.iter().enumerate() {
            if let Some(reason) = unpublishable(row) {
                outcomes[index] = Some(Outcome::GiveUp(reason));
                continue;
            }
            let report = report_tx.clone();
            let delivery = Delivery::callback(move |result| {
                let _ = report.send((index, result.map_err(str::to_owned)));
            });
            let envelope = Envelope {
                key: &row.saga_id,
                payload: &row.payload,
                event_id: row.event_id,
                // Not read by KafkaSink; the row's time, not the event's recordedAt (the payload holds that).
                recorded_at: row.created_at.timestamp_micros(),
                traceparent: row.traceparent.as_deref(),
            };
            self.sink.send(envelope, delivery);
            waiting += 1;
        }
        drop(report_tx);
        let deadline = tokio::time::Instant::now() + self.config.ack_timeout;
        while waiting > 0 {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some((index, result))) => {
                    waiting -= 1;
                    outcomes[index] = Some(match result {
                        Ok(()) => Outcome::Published,
                        Err(reason) if is_permanent(&reason) => Outcome::GiveUp(reason),
                        Err(reason) => Outcome::Retry(reason),
                    });
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Outcome::Retry(format!(
                        "no delivery report within {:?}",
                        self.config.ack_timeout
                    ))
                })
            })
            .collect()
    }

    /// Writes the round's outcomes into the claiming transaction.
    async fn mark(
        &self,
        tx: &mut sqlx::PgConnection,
        claimed: &[Claimed],
        outcomes: &[Outcome],
    ) -> Result<BatchReport, sqlx::Error> {
        let mut report = BatchReport {
            claimed: claimed.len(),
            ..BatchReport::default()
        };
        let (mut ok_ids, mut ok_times) = (Vec::new(), Vec::new());
        let (mut bad_ids, mut bad_times, mut bad_reasons, mut bad_final) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (row, outcome) in claimed.iter().zip(outcomes) {
            match outcome {
                Outcome::Published => {
                    ok_ids.push(row.event_id);
                    ok_times.push(row.created_at);
                    report.published += 1;
                }
                Outcome::Retry(reason) | Outcome::GiveUp(reason) => {
                    let give_up = matches!(outcome, Outcome::GiveUp(_));
                    if give_up {
                        report.given_up += 1;
                        tracing::error!(event_id = %row.event_id, saga_id = %row.saga_id, %reason,
                            "saga-tracker outbox relay: row cannot be published; given up (failed_at set)");
                    } else {
                        report.retry += 1;
                    }
                    bad_ids.push(row.event_id);
                    bad_times.push(row.created_at);
                    bad_reasons.push(reason.clone());
                    bad_final.push(give_up);
                }
            }
        }
        if !ok_ids.is_empty() {
            sqlx::query(
                "UPDATE saga_tracker_outbox o SET published_at = now() \
                 FROM unnest($1::uuid[], $2::timestamptz[]) AS a(event_id, created_at) \
                 WHERE o.event_id = a.event_id AND o.created_at = a.created_at",
            )
            .bind(&ok_ids)
            .bind(&ok_times)
            .execute(&mut *tx)
            .await?;
        }
        if !bad_ids.is_empty() {
            sqlx::query(
                "UPDATE saga_tracker_outbox o SET attempts = o.attempts + 1, last_error = a.reason, \
                     failed_at = CASE WHEN a.give_up THEN now() END \
                 FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::bool[]) \
                     AS a(event_id, created_at, reason, give_up) \
                 WHERE o.event_id = a.event_id AND o.created_at = a.created_at",
            )
            .bind(&bad_ids)
            .bind(&bad_times)
            .bind(&bad_reasons)
            .bind(&bad_final)
            .execute(&mut *tx)
            .await?;
        }
        Ok(report)
    }

    /// Creates partitions ahead and applies retention (see [`RelayConfig`]).
    pub async fn maintain(&self) -> Result<(), RelayError> {
        let created = super::ensure_partitions(&self.pool, self.config.partitions_ahead).await?;
        if created > 0 {
            tracing::info!(created, "saga-tracker outbox relay: partitions created");
        }
        if let Some(days) = self.config.retention_days {
            let dropped = super::drop_published_partitions(&self.pool, days).await?;
            if !dropped.is_empty() {
                tracing::info!(
                    ?dropped,
                    "saga-tracker outbox relay: published partitions dropped"
                );
            }
        }
        Ok(())
    }

    /// Runs rounds until `shutdown` completes: back to back while batches come full, otherwise waiting for a
    /// notification on `saga_tracker_outbox` or the poll interval; after a failed round (database or broker
    /// trouble) it waits with exponential backoff. Maintenance runs at start and every maintenance interval.
    /// A round in progress is finished before shutting down.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
        if self.config.batch_size == 0 {
            return Err(RelayError::Config("batch_size must be at least 1".into()));
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut listener = self.listen().await;
        let mut next_maintenance = tokio::time::Instant::now();
        let mut backoff = self.config.backoff_initial;
        loop {
            if tokio::time::Instant::now() >= next_maintenance {
                if let Err(err) = self.maintain().await {
                    tracing::error!(%err, "saga-tracker outbox relay: maintenance failed");
                }
                next_maintenance = tokio::time::Instant::now() + self.config.maintenance_interval;
            }
            let wait = match self.run_once().await {
                Ok(report) if report.retry > 0 => {
                    tracing::warn!(
                        ?report,
                        ?backoff,
                        "saga-tracker outbox relay: some rows were not acknowledged; retrying after backoff"
                    );
                    Some(self.next_backoff(&mut backoff))
                }
                Ok(report) => {
                    backoff = self.config.backoff_initial;
                    if report.claimed == self.config.batch_size as usize {
                        None
                    } else {
                        Some(self.config.poll_interval)
                    }
                }
                Err(err) => {
                    tracing::error!(%err, ?backoff, "saga-tracker outbox relay: round failed; retrying after backoff");
                    if listener.is_none() {
                        listener = self.listen().await;
                    }
                    Some(self.next_backoff(&mut backoff))
                }
            };
            let Some(wait) = wait else {
                if poll_now(&mut shutdown) {
                    return Ok(());
                }
                continue;
            };
            let woken = async {
                match listener.as_mut() {
                    // A notification, or the connection's failure (then we poll; it reconnects on the next recv).
                    Some(listener) if wait == self.config.poll_interval => {
                        let _ = tokio::time::timeout(wait, listener.recv()).await;
                    }
                    _ => tokio::time::sleep(wait).await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = woken => {}
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let result = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match result {
            Ok(listener) => Some(listener),
            Err(err) => {
                tracing::warn!(%err, "saga-tracker outbox relay: LISTEN failed; polling only");
                None
            }
        }
    }

    fn next_backoff(&self, backoff: &mut Duration) -> Duration {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(self.config.backoff_max);
        wait
    }
}

/// Whether `shutdown` has completed, without waiting.
fn poll_now(shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    shutdown.as_mut().poll(&mut cx).is_ready()
}

/// Why a row cannot be published at all, if so.
fn unpublishable(row: &Claimed) -> Option<String> {
    if row.saga_id.is_empty() {
        return Some("the row's saga_id (the Kafka key) is empty".to_owned());
    }
    if row.payload.is_empty() {
        return Some("the row's payload is empty".to_owned());
    }
    None
}

/// Delivery errors that fail again whatever the relay does (librdkafka's error names, as KafkaSink reports
/// them): the message is too large or malformed for the broker.
const PERMANENT: [&str; 5] = [
    "MessageSizeTooLarge",
    "InvalidMessageSize",
    "InvalidMessage",
    "InvalidRecord",
    "CorruptMessage",
];

fn is_permanent(reason: &str) -> bool {
    PERMANENT.iter().any(|code| reason.contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_are_told_from_transient_ones() {
        assert!(is_permanent(
            "Message production error: MessageSizeTooLarge (Broker: Message size too large)"
        ));
        assert!(!is_permanent("Local: Message timed out"));
        assert!(!is_permanent(
            "Message production error: MessageTimedOut (Local: Message timed out)"
        ));
    }
}
