//! `dlq redrive`: consumes `saga.tracker.dlq` from where the last run stopped up to its end at the start of
//! this run, stores what now decodes and validates (e.g. after the tracker learned a new schema version), and
//! sends the rest back to the end of the DLQ with its current reason (so a later run sees it again), counting
//! per reason. Progress is committed in a consumer group of its own after each batch, so an interrupted run
//! resumes and a finished run is not repeated. Duplicates are absorbed by the event id.
//!
//! With `--reason CODE` only messages dead-lettered for that reason are tried; the others go back to the
//! DLQ unchanged.
//!
//! Before reading the topic (after taking its ends), the dead letters kept in PostgreSQL because the DLQ topic refused them for good (`saga_dlq_local`,
//! see [`crate::ingest::dlq`]) are placed: what now validates and stores is stored, the rest is produced to the
//! DLQ topic with its current reason; each row placed is deleted, a row the topic still refuses stays.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use saga_tracker_core::codec::KnownSchemas;
use serde::Serialize;

use super::{OpsError, progress};
use crate::db::failure::{self, FailureKind};
use crate::db::{IncomingEvent, LocalDeadLetter, Store};
use crate::ingest::classify;
use crate::ingest::dlq::{self, DlqProducer, Rejection, headers};

/// Messages per database transaction and offset commit.
const BATCH: usize = 500;
/// Header counting how often a message was re-driven.
pub const ATTEMPTS_HEADER: &str = "dlq.redrive.attempts";

/// Where and how to re-drive.
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The DLQ topic.
    pub dlq_topic: String,
    /// The consumer group holding the re-drive's progress.
    pub group: String,
    /// Only messages with this `dlq.reason`.
    pub reason: Option<String>,
    /// The writer versions and Confluent schema ids that decode.
    pub schemas: KnownSchemas,
    /// Extra librdkafka properties.
    pub kafka_properties: Vec<(String, String)>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveSummary {
    /// DLQ messages read.
    pub read: u64,
    /// Events stored (new).
    pub ingested: u64,
    /// Events that decoded but were stored already.
    pub duplicates: u64,
    /// Messages still not readable, sent back to the DLQ, per current reason.
    pub still_dead: BTreeMap<String, u64>,
    /// Messages not tried because of `--reason`, sent back unchanged (or left in `saga_dlq_local`), per reason.
    pub skipped: BTreeMap<String, u64>,
    /// Rows of `saga_dlq_local` read.
    pub local_read: u64,
    /// Rows of `saga_dlq_local` that still do not store and were now produced to the DLQ topic (row deleted).
    pub local_to_topic: u64,
    /// Rows of `saga_dlq_local` the DLQ topic still refuses (kept).
    pub local_kept: u64,
}

fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    let h = m.headers()?;
    h.iter()
        .filter(|h| h.key == key)
        .last()
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Runs `dlq redrive`, storing into `store`.
pub async fn run(store: &Store, options: &RedriveOptions) -> Result<RedriveSummary, OpsError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &options.brokers)
        .set("group.id", &options.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in &options.kafka_properties {
        cc.set(k, v);
    }
    let consumer: BaseConsumer = cc.create()?;
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", &options.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000");
    for (k, v) in &options.kafka_properties {
        pc.set(k, v);
    }
    let producer: FutureProducer = pc.create()?;

    // the end of every partition now: what arrives later (including what this run sends back) waits
    let topic = options.dlq_topic.clone();
    let (consumer, ends, mut positions) = tokio::task::spawn_blocking(move || {
        let ends = super::replay::partition_ends(&consumer, &topic)?;
        let mut tpl = TopicPartitionList::new();
        for p in ends.keys() {
            tpl.add_partition(&topic, *p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        let mut positions = BTreeMap::new();
        let mut assign = TopicPartitionList::new();
        for (p, (low, _)) in &ends {
            let start = match committed.find_partition(&topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(n)) => n.max(*low),
                _ => *low,
            };
            positions.insert(*p, start);
            assign.add_partition_offset(&topic, *p, Offset::Offset(start))?;
        }
        consumer.assign(&assign)?;
        Ok::<_, OpsError>((consumer, ends, positions))
    })
    .await
    .map_err(|e| OpsError::Kafka(e.to_string()))??;
    // after the snapshot: what the kept rows add to the DLQ topic is for a later run
    let mut summary = RedriveSummary::default();
    let dlq = DlqProducer::new(
        &options.brokers,
        &options.dlq_topic,
        &options.kafka_properties,
    )?;
    redrive_local(store, &dlq, options, &mut summary).await?;
    let total: i64 = ends
        .iter()
        .map(|(p, (_, high))| (high - positions[p]).max(0))
        .sum();
    let bar = progress::bar(u64::try_from(total).unwrap_or(0), "redrive");

    let consumer = std::sync::Arc::new(consumer);
    loop {
        let c = std::sync::Arc::clone(&consumer);
        let ends_now = ends.clone();
        let done_now = positions.clone();
        let batch: Vec<OwnedMessage> =
            tokio::task::spawn_blocking(move || poll_batch(&c, &ends_now, &done_now))
                .await
                .map_err(|e| OpsError::Kafka(e.to_string()))??;
        if batch.is_empty() {
            break;
        }
        process(store, &producer, options, &batch, &mut summary).await?;
        for m in &batch {
            positions.insert(m.partition(), m.offset() + 1);
        }
        bar.inc(batch.len() as u64);
        let mut tpl = TopicPartitionList::new();
        for (p, next) in &positions {
            tpl.add_partition_offset(&options.dlq_topic, *p, Offset::Offset(*next))?;
        }
        let c = std::sync::Arc::clone(&consumer);
        tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| OpsError::Kafka(e.to_string()))??;
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Places the rows of `saga_dlq_local`, one at a time (there are few): stores what validates now, produces the
/// rest to the DLQ topic; deletes each row placed.
async fn redrive_local(
    store: &Store,
    dlq: &DlqProducer,
    options: &RedriveOptions,
    summary: &mut RedriveSummary,
) -> Result<(), OpsError> {
    let mut after = 0;
    loop {
        let rows = store.local_dead_letters(after, BATCH as i64).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.id;
        for row in rows {
            summary.local_read += 1;
            if options.reason.as_ref().is_some_and(|r| *r != row.reason) {
                *summary.skipped.entry(row.reason.clone()).or_default() += 1;
                continue;
            }
            let Some(rejection) = store_local(store, &row, &options.schemas, summary).await? else {
                store.delete_local_dead_letter(row.id).await?;
                continue;
            };
            let code = rejection.code();
            *summary.still_dead.entry(code.to_owned()).or_default() += 1;
            let row = LocalDeadLetter {
                reason: code.to_owned(),
                error: rejection.to_string(),
                ..row
            };
            match dlq.send_local(&row).await {
                Ok(()) => {
                    store.delete_local_dead_letter(row.id).await?;
                    summary.local_to_topic += 1;
                }
                Err(e) => {
                    tracing::warn!(id = row.id, error = %e, "the DLQ topic still refuses a kept dead letter");
                    summary.local_kept += 1;
                }
            }
        }
    }
}

/// Stores a kept dead letter if it validates and the database takes it; else why not.
async fn store_local(
    store: &Store,
    row: &LocalDeadLetter,
    schemas: &KnownSchemas,
    summary: &mut RedriveSummary,
) -> Result<Option<Rejection>, OpsError> {
    let message = dlq::local_message(row);
    let (good, mut bad) = classify(std::slice::from_ref(&message), schemas);
    if let Some((_, rejection)) = bad.pop() {
        return Ok(Some(rejection));
    }
    match store.write_batch(&good).await {
        Ok(new) => {
            summary.ingested += new.len() as u64;
            summary.duplicates += (good.len() - new.len()) as u64;
            Ok(None)
        }
        Err(e) if failure::kind(&e) == FailureKind::Data => {
            Ok(Some(Rejection::Database(failure::describe(&e))))
        }
        Err(e) => Err(e.into()),
    }
}

/// Up to [`BATCH`] messages below the snapshot ends; empty when every partition reached its end.
fn poll_batch(
    consumer: &BaseConsumer,
    ends: &BTreeMap<i32, (i64, i64)>,
    positions: &BTreeMap<i32, i64>,
) -> Result<Vec<OwnedMessage>, OpsError> {
    let mut out = Vec::new();
    let mut idle = 0;
    let mut pos = positions.clone();
    loop {
        let reached =
            |p: &i32, pos: &BTreeMap<i32, i64>| pos.get(p).is_some_and(|next| *next >= ends[p].1);
        if out.len() >= BATCH || ends.keys().all(|p| reached(p, &pos)) {
            return Ok(out);
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                idle = 0;
                let (p, o) = (m.partition(), m.offset());
                if o < ends[&p].1 {
                    out.push(m.detach());
                }
                pos.insert(p, o + 1);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                idle += 1;
                // messages below the end that never come (deleted by retention meanwhile): stop here
                if idle >= 20 {
                    return Ok(out);
                }
            }
        }
    }
}

async fn process(
    store: &Store,
    producer: &FutureProducer,
    options: &RedriveOptions,
    batch: &[OwnedMessage],
    summary: &mut RedriveSummary,
) -> Result<(), OpsError> {
    summary.read += batch.len() as u64;
    let (tried, skipped): (Vec<&OwnedMessage>, Vec<&OwnedMessage>) =
        batch.iter().partition(|m| match &options.reason {
            None => true,
            Some(r) => header(m, headers::REASON).as_deref() == Some(r.as_str()),
        });
    for m in skipped {
        let reason = header(m, headers::REASON).unwrap_or_else(|| "unknown".into());
        send_back(producer, &options.dlq_topic, m, None).await?;
        *summary.skipped.entry(reason).or_default() += 1;
    }
    let tried: Vec<OwnedMessage> = tried.into_iter().cloned().collect();
    let (good, bad) = classify(&tried, &options.schemas);
    for (i, rejection) in &bad {
        let error = rejection.to_string();
        send_back(
            producer,
            &options.dlq_topic,
            &tried[*i],
            Some((rejection.code(), &error)),
        )
        .await?;
        *summary
            .still_dead
            .entry(rejection.code().to_owned())
            .or_default() += 1;
    }
    // where the events were first read, from the DLQ headers
    let good: Vec<IncomingEvent> = good
        .into_iter()
        .map(|mut e| {
            let m = tried
                .iter()
                .find(|m| m.partition() == e.partition && m.offset() == e.offset);
            if let Some(m) = m {
                if let Some(t) = header(m, headers::TOPIC) {
                    e.topic = t;
                }
                if let Some(p) = header(m, headers::PARTITION).and_then(|p| p.parse().ok()) {
                    e.partition = p;
                }
                if let Some(o) = header(m, headers::OFFSET).and_then(|o| o.parse().ok()) {
                    e.offset = o;
                }
            }
            e
        })
        .collect();
    if !good.is_empty() {
        let new = store.write_batch(&good).await?;
        summary.ingested += new.len() as u64;
        summary.duplicates += (good.len() - new.len()) as u64;
    }
    Ok(())
}

/// Sends `m` to the end of the DLQ: key, payload and non-`dlq.*` headers unchanged; the `dlq.*` headers kept,
/// or replaced by the new reason and error; the attempt count incremented.
async fn send_back(
    producer: &FutureProducer,
    topic: &str,
    m: &OwnedMessage,
    reason: Option<(&str, &str)>,
) -> Result<(), OpsError> {
    let attempts = header(m, ATTEMPTS_HEADER)
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(0)
        + u64::from(reason.is_some());
    let attempts = attempts.to_string();
    let mut h = OwnedHeaders::new();
    if let Some(original) = m.headers() {
        for header in original.iter() {
            let replaced = header.key == ATTEMPTS_HEADER
                || (reason.is_some()
                    && (header.key == headers::REASON || header.key == headers::ERROR));
            if !replaced {
                h = h.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
    }
    if let Some((code, error)) = reason {
        h = h
            .insert(Header {
                key: headers::REASON,
                value: Some(code.as_bytes()),
            })
            .insert(Header {
                key: headers::ERROR,
                value: Some(error.as_bytes()),
            });
    }
    h = h.insert(Header {
        key: ATTEMPTS_HEADER,
        value: Some(attempts.as_bytes()),
    });
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(h);
    if let Some(key) = m.key() {
        record = record.key(key);
    }
    if let Some(payload) = m.payload() {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.into())
}
