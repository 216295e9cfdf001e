//! Ingestion: read `saga.tracker` in batches, decode with the runtime codec, dead-letter what does not decode,
//! write the rest to PostgreSQL in one transaction, and only then commit the offsets.
//!
//! Delivery is at-least-once into an idempotent store: if the process dies between the database commit and the
//! offset commit, the batch is read again and the `saga_events` primary key absorbs it.
//!
//! A database *data* error (see [`failure`](crate::db::failure)) is not retried: the batch is bisected until the
//! events PostgreSQL refuses are alone, those go to the DLQ (`db_rejected`, with the database's message) and the
//! others are stored, so one bad event never holds up the partition for more than its own batch. A transient
//! database error or a transient DLQ error never drops a batch: it is retried with backoff until it succeeds or the
//! service shuts down (and then its offsets stay uncommitted); a partition held up that way for
//! `--stall-after-seconds` is reported stalled ([`stall`]). A message the DLQ topic refuses for good (too large
//! for it, not authorized, invalid record, unknown topic) is kept in PostgreSQL instead ([`dlq`]).

pub mod consumer;
pub mod dlq;
pub mod stall;
pub mod validate;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use saga_tracker_core::codec::KnownSchemas;
use tokio::sync::{mpsc, watch};

use crate::db::failure::{self, FailureKind};
use crate::db::{IncomingEvent, Store};
use crate::metrics::Metrics;
use consumer::TrackerConsumer;
use dlq::{DlqProducer, Rejection};
use stall::PartitionKey;

/// What the ingest loop works with.
pub(crate) struct Ingest {
    pub consumer: Arc<TrackerConsumer>,
    pub dlq: DlqProducer,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub batch_size: usize,
    pub linger: Duration,
    pub schemas: KnownSchemas,
    pub lanes: usize,
}

/// Splits raw messages into events to store and messages to dead-letter; `schemas` says which writer versions
/// (by fingerprint, or by Confluent schema id) decode.
pub fn classify(
    messages: &[OwnedMessage],
    schemas: &KnownSchemas,
) -> (Vec<IncomingEvent>, Vec<(usize, Rejection)>) {
    let mut good = Vec::with_capacity(messages.len());
    let mut bad = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let decoded = schemas
            .decode(m.payload().unwrap_or_default())
            .map_err(Rejection::from)
            .and_then(|event| {
                validate::validate(&event)
                    .map(|()| event)
                    .map_err(Rejection::from)
            });
        match decoded {
            Ok(event) => good.push(IncomingEvent {
                event,
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err(rejection) => bad.push((i, rejection)),
        }
    }
    (good, bad)
}

impl Ingest {
    /// Runs until `shutdown` turns true: one reader task takes messages from librdkafka and hands batches to
    /// `lanes` writer tasks (partition `p` goes to lane `p % lanes`, so a partition's batches stay in order and
    /// each lane commits only its own partitions), which write them to PostgreSQL on connections of their own.
    pub(crate) async fn run(self, shutdown: watch::Receiver<bool>) {
        let lanes = self.lanes.max(1);
        let ingest = Arc::new(self);
        let mut senders = Vec::with_capacity(lanes);
        let mut writers = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            // One batch waiting per lane: the reader collects the next batch while the lane writes this one.
            let (tx, rx) = mpsc::channel(1);
            senders.push(tx);
            writers.push(tokio::spawn(
                Arc::clone(&ingest).write_lane(rx, shutdown.clone()),
            ));
        }
        ingest.read(senders, shutdown).await;
        for writer in writers {
            if let Err(e) = writer.await {
                tracing::error!(error = %e, "ingest writer task failed");
            }
        }
        ingest.commit_stored().await;
    }

    /// Collects batches: waits for a message, then takes every message librdkafka has already fetched without
    /// waiting (no timer per message), and hands a lane its batch as soon as it is full, or when the oldest
    /// waiting message has lingered `linger`. Returns on shutdown, or when a writer stopped.
    async fn read(
        &self,
        lanes: Vec<mpsc::Sender<Vec<OwnedMessage>>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut stream = self.consumer.stream();
        let mut pending: Vec<Vec<OwnedMessage>> = lanes.iter().map(|_| Vec::new()).collect();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let linger = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = linger => None,
                m = stream.next() => m,
            };
            if let Some(first) = next {
                self.take(first, &mut pending);
                while pending.iter().all(|b| b.len() < self.batch_size) {
                    match stream.next().now_or_never() {
                        Some(Some(m)) => self.take(m, &mut pending),
                        _ => break,
                    }
                }
                if pending.iter().any(|b| !b.is_empty()) {
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.linger);
                }
            }
            let expired = deadline.is_some_and(|at| tokio::time::Instant::now() >= at);
            for (lane, batch) in pending.iter_mut().enumerate() {
                if batch.is_empty() || !(expired || batch.len() >= self.batch_size) {
                    continue;
                }
                let full = std::mem::take(batch);
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    sent = lanes[lane].send(full) => if sent.is_err() { return },
                }
            }
            if pending.iter().all(Vec::is_empty) {
                deadline = None;
            }
        }
    }

    fn take(
        &self,
        message: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>,
        pending: &mut [Vec<OwnedMessage>],
    ) {
        match message {
            Ok(m) => {
                let lane = usize::try_from(m.partition()).unwrap_or(0) % pending.len();
                pending[lane].push(m.detach());
            }
            Err(e) => {
                tracing::warn!(error = %e, "kafka consumer error");
                self.metrics.error("kafka");
            }
        }
    }

    /// Writes the batches of one lane in order until the reader stops or shutdown interrupts a batch.
    async fn write_lane(
        self: Arc<Self>,
        mut batches: mpsc::Receiver<Vec<OwnedMessage>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        while let Some(batch) = batches.recv().await {
            if *shutdown.borrow() || !self.process(&batch, &mut shutdown).await {
                return;
            }
        }
    }

    /// Stores, dead-letters and commits one batch. False when shutdown interrupted it (nothing committed).
    async fn process(&self, batch: &[OwnedMessage], shutdown: &mut watch::Receiver<bool>) -> bool {
        let partitions = partitions_of(batch);
        self.metrics.stall().batch_started(&partitions);
        let (good, bad) = classify(batch, &self.schemas);
        let mut rejected: Vec<(&OwnedMessage, Rejection)> =
            bad.into_iter().map(|(i, r)| (&batch[i], r)).collect();
        if !good.is_empty() {
            let Some(stored) = self.store(&good, shutdown).await else {
                return false;
            };
            for &i in &stored.new {
                self.metrics.event_stored(&good[i].event);
            }
            self.metrics.duplicates(
                (good.len() - stored.new.len() - stored.rejected.len() - stored.too_long.len())
                    as u64,
            );
            let too_long = stored.too_long.iter().map(|&i| {
                (
                    i,
                    Rejection::SagaTooLong(self.store.max_events_per_saga().unwrap_or(0)),
                )
            });
            let refused = stored
                .rejected
                .into_iter()
                .map(|(i, message)| (i, Rejection::Database(message)));
            for (i, rejection) in too_long.chain(refused) {
                let event = &good[i];
                let Some(m) = batch
                    .iter()
                    .find(|m| m.partition() == event.partition && m.offset() == event.offset)
                else {
                    continue; // unreachable: every event comes from a message of the batch
                };
                rejected.push((m, rejection));
            }
        }
        for (m, rejection) in &rejected {
            tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), reason = rejection.code(), error = %rejection, "message sent to the DLQ");
            if !self.dead_letter(m, rejection, shutdown).await {
                return false;
            }
        }
        self.commit(batch).await;
        self.metrics.stall().batch_done(&partitions);
        true
    }

    /// Produces one rejected message to the DLQ topic: a transient failure is retried with backoff (the
    /// partition waits), a permanent one keeps the message in `saga_dlq_local` instead (see [`dlq`]). False when
    /// shutdown interrupted it.
    async fn dead_letter(
        &self,
        m: &OwnedMessage,
        rejection: &Rejection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut backoff = Backoff::default();
        loop {
            let error = match self.dlq.send(m, rejection).await {
                Ok(()) => {
                    self.metrics.dlq(rejection.code());
                    return true;
                }
                Err(e) => e,
            };
            self.metrics.error("dlq");
            match dlq::produce_failure(&error) {
                dlq::ProduceFailure::Permanent(cause) => {
                    tracing::error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), cause, error = %error, "the DLQ topic refused the message for good; keeping it in saga_dlq_local");
                    let row = dlq::local_dead_letter(m, rejection, cause, &error);
                    let kept = self
                        .retry_value(shutdown, "database", || self.store.keep_dead_letter(&row))
                        .await;
                    if kept.is_none() {
                        return false;
                    }
                    self.metrics.dlq(rejection.code());
                    self.metrics.dlq_local(cause);
                    return true;
                }
                dlq::ProduceFailure::Transient => {
                    tracing::warn!(error = %error, retry_in = ?backoff.delay(), "DLQ produce failed; retrying");
                }
            }
            if !backoff.wait(shutdown).await {
                return false;
            }
        }
    }

    /// Writes `events`; a data error splits the batch in halves until the events the database refuses are
    /// alone (they are returned with its message), a transient error retries the same slice with backoff. None
    /// when shutdown interrupted it.
    async fn store(
        &self,
        events: &[IncomingEvent],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Stored> {
        let mut stored = Stored::default();
        let mut pending: Vec<Range<usize>> = Vec::new();
        pending.push(0..events.len());
        while let Some(range) = pending.pop() {
            let slice = &events[range.clone()];
            let result = self
                .retry_transient(shutdown, || self.store.write(slice))
                .await?;
            match result {
                Ok(written) => {
                    stored
                        .new
                        .extend(written.new.into_iter().map(|i| i + range.start));
                    stored
                        .too_long
                        .extend(written.too_long.into_iter().map(|i| i + range.start));
                }
                Err(e) if range.len() == 1 => {
                    stored.rejected.push((range.start, failure::describe(&e)));
                }
                Err(e) => {
                    tracing::info!(error = %e, events = range.len(), "data error: bisecting the batch");
                    let mid = range.start + range.len() / 2;
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
            }
        }
        Some(stored)
    }

    async fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for m in batch {
            let e = next
                .entry((m.topic().to_owned(), m.partition()))
                .or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(error = %e, "cannot build the offset commit");
            }
        }
        // Stored offsets are what the final commit at shutdown (and `commit_stored`) sends; the asynchronous
        // commit keeps the batch's round trip to the group coordinator off the ingest path. A lost commit only
        // means the batch is read again and absorbed by the event-id key.
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // e.g. the partition was revoked meanwhile: its new owner re-reads from the last commit
            tracing::debug!(error = %e, "cannot store offsets");
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "offset commit failed");
            self.metrics.error("kafka");
        }
    }

    /// Commits the stored offsets synchronously (at shutdown, so that a restart resumes exactly after them).
    async fn commit_stored(&self) {
        let consumer = Arc::clone(&self.consumer);
        let result =
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
                .await;
        match result {
            Ok(Ok(())) | Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
            other => tracing::warn!(result = ?other, "final offset commit failed"),
        }
    }

    async fn retry_value<T, F, Fut, E>(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        what: &'static str,
        mut f: F,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut backoff = Backoff::default();
        loop {
            match f().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff.delay(), "{what} write failed; retrying the batch");
                    self.metrics.error(what);
                }
            }
            if !backoff.wait(shutdown).await {
                return None;
            }
        }
    }

    /// Runs a database write until it succeeds or fails with a data error (returned); transient errors are
    /// retried with backoff. None when shutdown interrupted it.
    async fn retry_transient<T, F, Fut>(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        mut f: F,
    ) -> Option<Result<T, sqlx::Error>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut backoff = Backoff::default();
        loop {
            match f().await {
                Ok(v) => return Some(Ok(v)),
                Err(e) => {
                    self.metrics.error("database");
                    if failure::kind(&e) == FailureKind::Data {
                        return Some(Err(e));
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff.delay(), "database write failed; retrying the batch");
                }
            }
            if !backoff.wait(shutdown).await {
                return None;
            }
        }
    }
}

/// What a batch write did: indices of the newly stored events, of the events the database refused (with its
/// message) and of those over `--max-events-per-saga`. The others were duplicates.
#[derive(Debug, Default)]
struct Stored {
    new: Vec<usize>,
    rejected: Vec<(usize, String)>,
    too_long: Vec<usize>,
}

/// The topic-partitions a batch holds messages of.
fn partitions_of(batch: &[OwnedMessage]) -> Vec<PartitionKey> {
    let mut keys: Vec<PartitionKey> = batch
        .iter()
        .map(|m| (m.topic().to_owned(), m.partition()))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Exponential backoff from 100 ms to 5 s.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    fn delay(&self) -> Duration {
        self.0
    }

    /// Sleeps the current delay and doubles it. False when shutdown came first.
    async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return false,
            _ = tokio::time::sleep(self.0) => {}
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        true
    }
}
