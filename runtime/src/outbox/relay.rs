//! The relay: publishes committed outbox rows to Kafka and marks them published once acknowledged.
//!
//! One round ([`Relay::run_once`]) is one PostgreSQL transaction: it claims up to `batch_size` unpublished rows
//! with `SELECT … FOR UPDATE SKIP LOCKED` (oldest first), hands the whole batch to the [`KafkaSink`] before
//! awaiting any delivery report, waits for every report, sets `published_at` on the acknowledged rows (one
//! update per partition, by TID: the rows are locked, so their TIDs hold) and commits. Rows are chosen by their
//! lock and their `published_at`, never by a "highest id/time seen" mark, so a row committed late or out of order
//! (a long transaction) is still picked up. Other relays skip the locked rows, so they publish disjoint batches.
//!
//! [`Relay::run`] and [`Relay::drain`] overlap rounds: while a full batch's reports come in, the next batch is
//! claimed in a second transaction (skipping the first one's locked rows) and produced. A relay that dies
//! releases its locks with its connections and its batches in flight (at most two), acknowledged or not, are
//! claimed again: duplicates are possible only for those, and they carry the same eventId (the tracker
//! deduplicates by it). The marking transactions commit with `synchronous_commit = off`: a database crash can
//! lose the last marks, which only republishes those rows, the same way.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt as _;
use sqlx::postgres::PgListener;
use sqlx::postgres::types::Oid;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row as _, Transaction};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
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
    /// Marking a batch published matched fewer rows than it acknowledged (a partition was replaced under the
    /// relay); the batch is rolled back and claimed again.
    #[error(
        "outbox relay: marked {marked} of {expected} acknowledged rows published; the batch is claimed again"
    )]
    Marking {
        /// Rows acknowledged.
        expected: usize,
        /// Rows the update found.
        marked: u64,
    },
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

impl BatchReport {
    /// Adds another round's counts.
    pub fn add(&mut self, other: BatchReport) {
        self.claimed += other.claimed;
        self.published += other.published;
        self.retry += other.retry;
        self.given_up += other.given_up;
    }
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
    /// Partition names by oid, for the marking updates.
    partitions: Mutex<HashMap<u32, String>>,
}

/// A claimed row. Its place (`partition`, `tid`) is stable while the claiming transaction holds its row lock, so
/// the marking update finds it by TID instead of searching the partition.
struct Claimed {
    partition: u32,
    tid: i64,
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

/// A claimed batch handed to the sink, its delivery reports coming in; its transaction holds the rows' locks.
struct InFlight {
    tx: Transaction<'static, Postgres>,
    rows: Vec<Claimed>,
    outcomes: Vec<Option<Outcome>>,
    reports: UnboundedReceiver<(usize, Result<(), String>)>,
    waiting: usize,
    deadline: tokio::time::Instant,
}

/// The claim: the oldest waiting rows not locked by another relay (or by this relay's batch in flight), with
/// their partition and TID (block << 16 | offset) for the marking update, and the `traceparent` header read
/// out of the JSON by the server.
const CLAIM: &str = "SELECT tableoid, \
         ((ctid::text::point)[0]::int8 << 16) | (ctid::text::point)[1]::int8 AS tid, \
         event_id, created_at, saga_id, payload, headers->>'traceparent' AS traceparent \
     FROM saga_tracker_outbox \
     WHERE published_at IS NULL AND failed_at IS NULL \
     ORDER BY created_at \
     LIMIT $1 \
     FOR UPDATE SKIP LOCKED";

/// The TIDs of a batch's rows in one partition, from their `int8` encoding.
const TIDS: &str =
    "ARRAY(SELECT format('(%s,%s)', t >> 16, t & 65535)::tid FROM unnest($1::int8[]) t)";

impl Relay {
    /// A relay over `pool`'s database (the outbox in its current schema) publishing through `sink`. The pool
    /// needs two connections for the relay's overlapping rounds (see [`Relay::run`]) and one for `LISTEN`.
    pub fn new(pool: PgPool, sink: KafkaSink) -> Relay {
        Relay {
            pool,
            sink: Arc::new(sink),
            config: RelayConfig::default(),
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the configuration.
    pub fn config(mut self, config: RelayConfig) -> Relay {
        self.config = config;
        self
    }

    /// One round: claims a batch, publishes it, marks what the broker acknowledged, commits.
    pub async fn run_once(&self) -> Result<BatchReport, RelayError> {
        self.check()?;
        match self.claim().await? {
            Some(batch) => self.settle(batch).await,
            None => Ok(BatchReport::default()),
        }
    }

    /// Rounds until the outbox has no waiting row: each full batch's successor is claimed and handed to the
    /// broker while the batch's own acknowledgements come in (see [`Relay::run`]). Returns the rounds' totals.
    pub async fn drain(&self) -> Result<BatchReport, RelayError> {
        self.check()?;
        let mut total = BatchReport::default();
        let mut pending = self.claim().await?;
        while let Some(batch) = pending.take() {
            let settled = if self.is_full(&batch) {
                let (next, settled) = tokio::join!(self.claim(), self.settle(batch));
                pending = next?;
                settled?
            } else {
                self.settle(batch).await?
            };
            total.add(settled);
        }
        Ok(total)
    }

    fn check(&self) -> Result<(), RelayError> {
        if self.config.batch_size == 0 {
            return Err(RelayError::Config("batch_size must be at least 1".into()));
        }
        Ok(())
    }

    fn is_full(&self, batch: &InFlight) -> bool {
        batch.rows.len() >= self.config.batch_size as usize
    }

    /// Claims a batch in a new transaction and hands every row to the sink; `None` when nothing waits.
    async fn claim(&self) -> Result<Option<InFlight>, RelayError> {
        let mut tx = self.pool.begin().await?;
        // Marking published need not wait for the WAL flush: a mark lost in a database crash only republishes
        // its rows, with the same eventIds (the tracker deduplicates them).
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let mut rows = Vec::with_capacity(self.config.batch_size as usize);
        {
            let mut stream = sqlx::query(CLAIM)
                .bind(i64::from(self.config.batch_size))
                .fetch(&mut *tx);
            while let Some(row) = stream.try_next().await? {
                rows.push(Claimed {
                    partition: row.try_get::<Oid, _>(0)?.0,
                    tid: row.try_get(1)?,
                    event_id: row.try_get(2)?,
                    created_at: row.try_get(3)?,
                    saga_id: row.try_get(4)?,
                    payload: row.try_get(5)?,
                    traceparent: row.try_get(6)?,
                });
            }
        }
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        let mut outcomes: Vec<Option<Outcome>> = (0..rows.len()).map(|_| None).collect();
        let (report_tx, reports) = unbounded_channel::<(usize, Result<(), String>)>();
        let mut waiting = 0usize;
        for (index, row) in rows.iter().enumerate() {
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
        Ok(Some(InFlight {
            tx,
            rows,
            outcomes,
            reports,
            waiting,
            deadline: tokio::time::Instant::now() + self.config.ack_timeout,
        }))
    }

    /// Waits for a batch's delivery reports (or its deadline), marks the outcomes in its transaction, commits.
    async fn settle(&self, mut batch: InFlight) -> Result<BatchReport, RelayError> {
        while batch.waiting > 0 {
            match tokio::time::timeout_at(batch.deadline, batch.reports.recv()).await {
                Ok(Some((index, result))) => {
                    batch.waiting -= 1;
                    batch.outcomes[index] = Some(match result {
                        Ok(()) => Outcome::Published,
                        Err(reason) if is_permanent(&reason) => Outcome::GiveUp(reason),
                        Err(reason) => Outcome::Retry(reason),
                    });
                }
                Ok(None) | Err(_) => break,
            }
        }
        let report = self.mark(&mut batch).await?;
        batch.tx.commit().await?;
        Ok(report)
    }

    /// Writes a batch's outcomes into its transaction: one update per partition for the acknowledged rows (by
    /// TID), one per partition for the others.
    async fn mark(&self, batch: &mut InFlight) -> Result<BatchReport, RelayError> {
        let mut report = BatchReport {
            claimed: batch.rows.len(),
            ..BatchReport::default()
        };
        // Normally one partition (the batch is consecutive in created_at), two around midnight.
        let mut ok: Vec<(u32, Vec<i64>)> = Vec::new();
        let mut bad: Vec<Unpublished> = Vec::new();
        for (row, outcome) in batch.rows.iter().zip(&mut batch.outcomes) {
            let outcome = outcome.take().unwrap_or_else(|| {
                Outcome::Retry(format!(
                    "no delivery report within {:?}",
                    self.config.ack_timeout
                ))
            });
            match outcome {
                Outcome::Published => {
                    report.published += 1;
                    match ok.iter_mut().find(|(p, _)| *p == row.partition) {
                        Some((_, tids)) => tids.push(row.tid),
                        None => ok.push((row.partition, vec![row.tid])),
                    }
                }
                Outcome::Retry(reason) => {
                    report.retry += 1;
                    push_bad(&mut bad, row, reason, false);
                }
                Outcome::GiveUp(reason) => {
                    report.given_up += 1;
                    tracing::error!(event_id = %row.event_id, saga_id = %row.saga_id, %reason,
                        "saga-tracker outbox relay: row cannot be published; given up (failed_at set)");
                    push_bad(&mut bad, row, reason, true);
                }
            }
        }
        for (partition, tids) in ok {
            let name = self.partition_name(&mut batch.tx, partition).await?;
            let sql = format!(
                "UPDATE {name} SET published_at = now() WHERE ctid = ANY({TIDS}) AND tableoid = $2"
            );
            let marked = sqlx::query(&sql)
                .bind(&tids)
                .bind(Oid(partition))
                .execute(&mut *batch.tx)
                .await?
                .rows_affected();
            if marked != tids.len() as u64 {
                // The remembered name no longer names that partition: forget it; the batch rolls back and its
                // rows are claimed again.
                self.partitions().remove(&partition);
                return Err(RelayError::Marking {
                    expected: tids.len(),
                    marked,
                });
            }
        }
        for Unpublished {
            partition,
            tids,
            reasons,
            give_up,
        } in bad
        {
            let name = self.partition_name(&mut batch.tx, partition).await?;
            let sql = format!(
                "UPDATE {name} o SET attempts = o.attempts + 1, last_error = a.reason, \
                     failed_at = CASE WHEN a.give_up THEN now() END \
                 FROM unnest($1::int8[], $2::text[], $3::bool[]) AS a(t, reason, give_up) \
                 WHERE o.ctid = format('(%s,%s)', a.t >> 16, a.t & 65535)::tid AND o.tableoid = $4"
            );
            sqlx::query(&sql)
                .bind(&tids)
                .bind(&reasons)
                .bind(&give_up)
                .bind(Oid(partition))
                .execute(&mut *batch.tx)
                .await?;
        }
        Ok(report)
    }

    /// The quoted, schema-qualified name of a partition (remembered; partitions are not renamed).
    async fn partition_name(
        &self,
        conn: &mut sqlx::PgConnection,
        partition: u32,
    ) -> Result<String, sqlx::Error> {
        if let Some(name) = self.partitions().get(&partition) {
            return Ok(name.clone());
        }
        let name: String = sqlx::query_scalar(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        )
        .bind(Oid(partition))
        .fetch_one(conn)
        .await?;
        self.partitions().insert(partition, name.clone());
        Ok(name)
    }

    fn partitions(&self) -> std::sync::MutexGuard<'_, HashMap<u32, String>> {
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    ///
    /// Rounds overlap: while a full batch's acknowledgements come in, the next batch is claimed (in a second
    /// transaction; the first one's rows are locked, so it gets the next rows) and handed to the broker. Each
    /// batch is still marked published only after the broker acknowledged its rows, and committed on its own;
    /// a relay that dies republishes at most its two batches in flight. The batches in flight are finished
    /// before shutting down.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RelayError> {
        self.check()?;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut listener = self.listen().await;
        let mut next_maintenance = tokio::time::Instant::now();
        let mut backoff = self.config.backoff_initial;
        let mut pending: Option<InFlight> = None;
        loop {
            if tokio::time::Instant::now() >= next_maintenance {
                if let Err(err) = self.maintain().await {
                    tracing::error!(%err, "saga-tracker outbox relay: maintenance failed");
                }
                next_maintenance = tokio::time::Instant::now() + self.config.maintenance_interval;
            }
            // Claim the next batch (while the previous full one settles), or settle the last one.
            let (claimed, settled) = match pending.take() {
                Some(batch) if self.is_full(&batch) => {
                    let (claimed, settled) = tokio::join!(self.claim(), self.settle(batch));
                    (Some(claimed), Some(settled))
                }
                Some(batch) => (None, Some(self.settle(batch).await)),
                None => (Some(self.claim().await), None),
            };
            let mut failed = false;
            let mut idle = false;
            match settled {
                Some(Ok(report)) if report.retry > 0 => {
                    tracing::warn!(
                        ?report,
                        ?backoff,
                        "saga-tracker outbox relay: some rows were not acknowledged; retrying after backoff"
                    );
                    failed = true;
                }
                Some(Ok(report)) => idle = report.claimed < self.config.batch_size as usize,
                Some(Err(err)) => {
                    tracing::error!(%err, ?backoff, "saga-tracker outbox relay: round failed; retrying after backoff");
                    failed = true;
                }
                None => {}
            }
            match claimed {
                Some(Ok(Some(batch))) => pending = Some(batch),
                Some(Ok(None)) => idle = true,
                Some(Err(err)) => {
                    tracing::error!(%err, ?backoff, "saga-tracker outbox relay: claiming failed; retrying after backoff");
                    failed = true;
                }
                None => {}
            }
            let wait = if failed {
                if listener.is_none() {
                    listener = self.listen().await;
                }
                Some(self.next_backoff(&mut backoff))
            } else {
                backoff = self.config.backoff_initial;
                // A batch in flight is settled first; then the relay waits for work.
                (idle && pending.is_none()).then_some(self.config.poll_interval)
            };
            let Some(wait) = wait else {
                if poll_now(&mut shutdown) {
                    return self.finish(pending).await;
                }
                continue;
            };
            if let Some(batch) = pending.take() {
                // Do not hold a batch's locks through a backoff.
                if let Err(err) = self.settle(batch).await {
                    tracing::error!(%err, "saga-tracker outbox relay: round failed");
                }
            }
            let woken = async {
                match listener.as_mut() {
                    // A notification, or the connection's failure (then we poll; it reconnects on the next recv).
                    Some(listener) if !failed => {
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

    /// Settles the batch in flight at shutdown.
    async fn finish(&self, pending: Option<InFlight>) -> Result<(), RelayError> {
        if let Some(batch) = pending {
            self.settle(batch).await?;
        }
        Ok(())
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

/// The rows of one partition that were not published this round, with why.
struct Unpublished {
    partition: u32,
    tids: Vec<i64>,
    reasons: Vec<String>,
    give_up: Vec<bool>,
}

/// Adds a row that was not published to its partition's group.
fn push_bad(bad: &mut Vec<Unpublished>, row: &Claimed, reason: String, give_up: bool) {
    let index = match bad.iter().position(|u| u.partition == row.partition) {
        Some(index) => index,
        None => {
            bad.push(Unpublished {
                partition: row.partition,
                tids: Vec::new(),
                reasons: Vec::new(),
                give_up: Vec::new(),
            });
            bad.len() - 1
        }
    };
    let group = &mut bad[index];
    group.tids.push(row.tid);
    group.reasons.push(reason);
    group.give_up.push(give_up);
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
