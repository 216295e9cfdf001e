//! `replay --from T [--to T2]`: re-ingests `saga.tracker` from a point in time.
//!
//! The offsets for `T` (and `T2`) come from the broker's `offsets_for_times` on every partition. The broker
//! answers "end" for a partition without a message at or after the time; when it answers "end" although the
//! partition's last message is newer (a broker that does not resolve times, like librdkafka's mock cluster),
//! the partition is scanned for the first message at or after the time instead.
//!
//! - Without `--to`: the tracker's consumer group is rewound to those offsets (never moved forward: a
//!   partition the group has not reached yet keeps its offset). The service re-reads from there when it
//!   starts; the event id absorbs what it had stored. Refused while the group has live members: stop the
//!   tracker first (a running consumer would overwrite the offsets with its next commit).
//! - With `--to`: the command reads `[T, T2)` itself and stores it (duplicates absorbed), leaving the group's
//!   offsets alone; messages that do not decode are counted (the service dead-lettered them when it read them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use saga_tracker_core::codec::KnownSchemas;
use serde::Serialize;

use super::{OpsError, progress};
use crate::db::Store;
use crate::ingest::classify;

const TIMEOUT: Duration = Duration::from_secs(10);

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// The tracker's consumer group.
    pub group: String,
    /// From this time (Kafka message timestamps).
    pub from: DateTime<Utc>,
    /// Up to this time (exclusive); see the module doc.
    pub to: Option<DateTime<Utc>>,
    /// The writer versions and Confluent schema ids that decode.
    pub schemas: KnownSchemas,
    /// Extra librdkafka properties.
    pub kafka_properties: Vec<(String, String)>,
}

/// One partition's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReplay {
    /// The partition.
    pub partition: i32,
    /// The group's committed offset before (`None`: nothing committed).
    pub committed_before: Option<i64>,
    /// The first offset at or after `from`.
    pub from_offset: i64,
    /// The offset at `to`, or the end of the partition.
    pub to_offset: i64,
    /// The group's offset after (rewind mode).
    pub committed_after: Option<i64>,
}

/// The outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// Per partition.
    pub partitions: Vec<PartitionReplay>,
    /// Messages read (`--to` mode).
    pub read: u64,
    /// Events stored new (`--to` mode).
    pub ingested: u64,
    /// Events stored already (`--to` mode).
    pub duplicates: u64,
    /// Messages that did not decode or validate, per reason (`--to` mode).
    pub rejected: BTreeMap<String, u64>,
}

/// `(low, high)` watermarks of every partition of `topic`; an error when the topic does not exist.
pub fn partition_ends(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<BTreeMap<i32, (i64, i64)>, OpsError> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut out = BTreeMap::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        if let Some(e) = t.error() {
            return Err(OpsError::Kafka(format!(
                "topic `{topic}`: {:?}",
                RDKafkaErrorCode::from(e)
            )));
        }
        for p in t.partitions() {
            out.insert(p.id(), consumer.fetch_watermarks(topic, p.id(), TIMEOUT)?);
        }
    }
    if out.is_empty() {
        return Err(OpsError::Kafka(format!("topic `{topic}` does not exist")));
    }
    Ok(out)
}

fn client(options: &ReplayOptions, group: &str) -> Result<BaseConsumer, OpsError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &options.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    for (k, v) in &options.kafka_properties {
        cc.set(k, v);
    }
    Ok(cc.create()?)
}

/// Refuses when the group has live members (where the broker answers DescribeGroups).
fn check_no_members(consumer: &BaseConsumer, group: &str) -> Result<(), OpsError> {
    match consumer.fetch_group_list(Some(group), TIMEOUT) {
        Ok(list) => {
            if let Some(g) = list.groups().iter().find(|g| g.name() == group)
                && !g.members().is_empty()
            {
                let members: Vec<String> = g
                    .members()
                    .iter()
                    .map(|m| format!("{} on {}", m.client_id(), m.client_host()))
                    .collect();
                return Err(OpsError::GroupActive {
                    group: group.to_owned(),
                    members: members.join(", "),
                });
            }
            Ok(())
        }
        // The broker cannot describe groups: the offset commit below is refused if members hold the group.
        Err(e) => {
            tracing::info!(error = %e, "cannot describe the consumer group; relying on the commit check");
            Ok(())
        }
    }
}

/// The first offset of each partition whose message timestamp is at or after `at` (`high` when none).
fn offsets_at(
    consumer: &BaseConsumer,
    options: &ReplayOptions,
    ends: &BTreeMap<i32, (i64, i64)>,
    at: DateTime<Utc>,
) -> Result<BTreeMap<i32, i64>, OpsError> {
    let ms = at.timestamp_millis();
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition_offset(&options.topic, *p, Offset::Offset(ms))?;
    }
    let answer = consumer.offsets_for_times(tpl, TIMEOUT)?;
    let mut out = BTreeMap::new();
    for (p, (low, high)) in ends {
        let offset = match answer
            .find_partition(&options.topic, *p)
            .map(|e| e.offset())
        {
            Some(Offset::Offset(n)) => n,
            _ => {
                // "end": believe it only if the last message is older than `at`
                if high > low && last_timestamp(options, *p, *high)? >= ms {
                    scan(options, *p, *low, *high, ms)?
                } else {
                    *high
                }
            }
        };
        out.insert(*p, offset.clamp(*low, *high));
    }
    Ok(out)
}

fn timestamp(m: &rdkafka::message::BorrowedMessage<'_>) -> i64 {
    m.timestamp().to_millis().unwrap_or(i64::MIN)
}

fn reader(options: &ReplayOptions, partition: i32, from: i64) -> Result<BaseConsumer, OpsError> {
    let c = client(options, &format!("{}.replay-reader", options.group))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&options.topic, partition, Offset::Offset(from))?;
    c.assign(&tpl)?;
    Ok(c)
}

fn last_timestamp(options: &ReplayOptions, partition: i32, high: i64) -> Result<i64, OpsError> {
    let c = reader(options, partition, high - 1)?;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            return Ok(timestamp(&m?));
        }
    }
    Err(OpsError::Kafka(format!(
        "partition {partition}: cannot read its last message"
    )))
}

fn scan(
    options: &ReplayOptions,
    partition: i32,
    low: i64,
    high: i64,
    ms: i64,
) -> Result<i64, OpsError> {
    let c = reader(options, partition, low)?;
    let mut idle = 0;
    while idle < 50 {
        match c.poll(Duration::from_millis(200)) {
            Some(m) => {
                let m = m?;
                if timestamp(&m) >= ms {
                    return Ok(m.offset());
                }
                if m.offset() + 1 >= high {
                    return Ok(high);
                }
                idle = 0;
            }
            None => idle += 1,
        }
    }
    Err(OpsError::Kafka(format!(
        "partition {partition}: no message while scanning for the time"
    )))
}

/// Runs `replay`; with `--to`, stores into `store`.
pub async fn run(store: &Store, options: &ReplayOptions) -> Result<ReplaySummary, OpsError> {
    if let Some(to) = options.to
        && to <= options.from
    {
        return Err(OpsError::Input(format!(
            "--to {to} is not after --from {}",
            options.from
        )));
    }
    let opts = options.clone();
    let (plan, ends) = tokio::task::spawn_blocking(move || plan(&opts))
        .await
        .map_err(|e| OpsError::Kafka(e.to_string()))??;
    let mut summary = ReplaySummary {
        partitions: plan,
        ..ReplaySummary::default()
    };
    if options.to.is_none() {
        let opts = options.clone();
        let partitions = summary.partitions.clone();
        summary.partitions = tokio::task::spawn_blocking(move || rewind(&opts, partitions))
            .await
            .map_err(|e| OpsError::Kafka(e.to_string()))??;
        return Ok(summary);
    }
    let _ = ends;
    ingest(store, options, &mut summary).await?;
    Ok(summary)
}

type Plan = (Vec<PartitionReplay>, BTreeMap<i32, (i64, i64)>);

fn plan(options: &ReplayOptions) -> Result<Plan, OpsError> {
    let consumer = client(options, &options.group)?;
    let ends = partition_ends(&consumer, &options.topic)?;
    check_no_members(&consumer, &options.group)?;
    let from = offsets_at(&consumer, options, &ends, options.from)?;
    let to = match options.to {
        Some(t) => offsets_at(&consumer, options, &ends, t)?,
        None => ends.iter().map(|(p, (_, high))| (*p, *high)).collect(),
    };
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition(&options.topic, *p);
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
    let plan = ends
        .keys()
        .map(|p| PartitionReplay {
            partition: *p,
            committed_before: match committed
                .find_partition(&options.topic, *p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(n)) => Some(n),
                _ => None,
            },
            from_offset: from[p],
            to_offset: to[p],
            committed_after: None,
        })
        .collect();
    Ok((plan, ends))
}

fn rewind(
    options: &ReplayOptions,
    mut partitions: Vec<PartitionReplay>,
) -> Result<Vec<PartitionReplay>, OpsError> {
    let consumer = client(options, &options.group)?;
    let mut tpl = TopicPartitionList::new();
    for p in &mut partitions {
        // never forward: a group behind `from` still has to read what lies between
        let target = p
            .committed_before
            .map_or(p.from_offset, |c| c.min(p.from_offset));
        p.committed_after = Some(target);
        tpl.add_partition_offset(&options.topic, p.partition, Offset::Offset(target))?;
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => Ok(partitions),
        Err(e) => match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress,
            ) => Err(OpsError::GroupActive {
                group: options.group.clone(),
                members: format!("the broker refused the commit: {e}"),
            }),
            _ => Err(e.into()),
        },
    }
}

async fn ingest(
    store: &Store,
    options: &ReplayOptions,
    summary: &mut ReplaySummary,
) -> Result<(), OpsError> {
    let total: i64 = summary
        .partitions
        .iter()
        .map(|p| (p.to_offset - p.from_offset).max(0))
        .sum();
    let bar = progress::bar(u64::try_from(total).unwrap_or(0), "replay");
    for p in summary.partitions.clone() {
        if p.to_offset <= p.from_offset {
            continue;
        }
        let c = Arc::new(reader(options, p.partition, p.from_offset)?);
        let mut next = p.from_offset;
        while next < p.to_offset {
            let c2 = Arc::clone(&c);
            let end = p.to_offset;
            let batch: Vec<OwnedMessage> = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let mut idle = 0;
                while out.len() < 500 && idle < 50 {
                    match c2.poll(Duration::from_millis(200)) {
                        Some(Ok(m)) => {
                            idle = 0;
                            let last = m.offset() + 1 >= end;
                            if m.offset() < end {
                                out.push(m.detach());
                            }
                            if last {
                                break;
                            }
                        }
                        Some(Err(e)) => return Err(OpsError::from(e)),
                        None => idle += 1,
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|e| OpsError::Kafka(e.to_string()))??;
            let Some(last) = batch.last() else {
                return Err(OpsError::Kafka(format!(
                    "partition {}: nothing to read at offset {next}",
                    p.partition
                )));
            };
            next = last.offset() + 1;
            summary.read += batch.len() as u64;
            bar.inc(batch.len() as u64);
            let (good, bad) = classify(&batch, &options.schemas);
            for (_, r) in &bad {
                *summary.rejected.entry(r.code().to_owned()).or_default() += 1;
            }
            if !good.is_empty() {
                let new = store.write_batch(&good).await?;
                summary.ingested += new.len() as u64;
                summary.duplicates += (good.len() - new.len()) as u64;
            }
        }
    }
    bar.finish_and_clear();
    Ok(())
}
