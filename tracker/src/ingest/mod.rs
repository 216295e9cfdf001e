//! Ingestion: read `saga.tracker` in batches, decode with the runtime codec, dead-letter what does not decode,
//! write the rest to PostgreSQL in one transaction, and only then commit the offsets.
//!
//! Delivery is at-least-once into an idempotent store: if the process dies between the database commit and the
//! offset commit, the batch is read again and the `saga_events` primary key absorbs it. A database or DLQ error
//! never drops a batch and never stops the loop: the batch is retried with backoff until it succeeds or the
//! service shuts down (and then its offsets stay uncommitted).

pub mod consumer;
pub mod dlq;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::db::{IncomingEvent, Store};
use crate::metrics::Metrics;
use consumer::TrackerConsumer;
use dlq::{DlqProducer, Rejection};

/// What the ingest loop works with.
pub(crate) struct Ingest {
    pub consumer: Arc<TrackerConsumer>,
    pub dlq: DlqProducer,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub batch_size: usize,
    pub linger: Duration,
    pub confluent_schema_id: Option<u32>,
}

/// Splits raw messages into events to store and messages to dead-letter.
pub fn classify(
    messages: &[OwnedMessage],
    confluent_schema_id: Option<u32>,
) -> (Vec<IncomingEvent>, Vec<(usize, Rejection)>) {
    let mut good = Vec::with_capacity(messages.len());
    let mut bad = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let decoded = saga_tracker_core::codec::decode_any(
            m.payload().unwrap_or_default(),
            confluent_schema_id,
        )
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
    /// Runs until `shutdown` turns true.
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let first = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                m = self.consumer.recv() => m,
            };
            let mut batch = Vec::with_capacity(self.batch_size);
            match first {
                Ok(m) => batch.push(m.detach()),
                Err(e) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    self.metrics.error("kafka");
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + self.linger;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m.detach()),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "kafka consumer error");
                        self.metrics.error("kafka");
                    }
                    Err(_) => break,
                }
            }
            if !self.process(&batch, &mut shutdown).await {
                return;
            }
        }
    }

    /// Stores, dead-letters and commits one batch. False when shutdown interrupted it (nothing committed).
    async fn process(&self, batch: &[OwnedMessage], shutdown: &mut watch::Receiver<bool>) -> bool {
        let (good, bad) = classify(batch, self.confluent_schema_id);
        for (i, rejection) in &bad {
            let m = &batch[*i];
            tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), reason = rejection.code(), error = %rejection, "message sent to the DLQ");
            if !self
                .retry(shutdown, "dlq", || self.dlq.send(m, rejection))
                .await
            {
                return false;
            }
            self.metrics.dlq(rejection.code());
        }
        if !good.is_empty() {
            let Some(new) = self
                .retry_value(shutdown, "database", || self.store.write_batch(&good))
                .await
            else {
                return false;
            };
            for &i in &new {
                self.metrics.event_stored(&good[i].event);
            }
            self.metrics.duplicates((good.len() - new.len()) as u64);
        }
        self.commit(batch).await;
        true
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
        let consumer = Arc::clone(&self.consumer);
        let result =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
        if !matches!(result, Ok(Ok(()))) {
            // The batch is stored; the next commit covers it, or a restart re-reads it and the store absorbs it.
            tracing::warn!(?result, "offset commit failed");
            self.metrics.error("kafka");
        }
    }

    async fn retry<F, Fut, E>(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        what: &'static str,
        f: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        self.retry_value(shutdown, what, f).await.is_some()
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
        let mut backoff = Duration::from_millis(100);
        loop {
            match f().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "{what} write failed; retrying the batch");
                    self.metrics.error(what);
                }
            }
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
