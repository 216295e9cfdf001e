//! Reads a run's events back from `saga.tracker` and decodes them with [`saga_tracker::codec::decode`].

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Message, Offset, TopicPartitionList};
use saga_tracker::SagaEvent;
use saga_tracker::codec::DecodeError;

use crate::DemoError;
use crate::bus::{self, Kafka, Offsets};

/// A message of this run that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Why.
    pub error: DecodeError,
}

/// What was read back.
#[derive(Debug, Clone, Default)]
pub struct ReadBack {
    /// The decoded events of this run, in the order they were read.
    pub events: Vec<SagaEvent>,
    /// Messages keyed by one of this run's sagas that did not decode.
    pub undecodable: Vec<Undecodable>,
    /// Messages in the range that belong to other sagas (a shared broker).
    pub other_sagas: usize,
    /// Messages read in total.
    pub messages: usize,
    /// Where the read stopped, per partition: the next read starts here.
    pub end: Offsets,
}

impl ReadBack {
    /// Appends a later read.
    pub fn extend(&mut self, later: ReadBack) {
        self.events.extend(later.events);
        self.undecodable.extend(later.undecodable);
        self.other_sagas += later.other_sagas;
        self.messages += later.messages;
        self.end = later.end;
    }
}

/// How long reading goes on after the reported end of every partition was reached: a broker may report its end
/// offsets per batch or late (tansu does), so the read ends only when nothing more arrives for this long.
const SETTLE: Duration = Duration::from_millis(500);

/// Reads `topic` from `start` up to its current end, keeping the messages whose key is one of `saga_ids`.
/// Blocking: call it from a blocking thread.
pub fn read_back(
    kafka: &Kafka,
    topic: &str,
    start: &Offsets,
    saga_ids: &HashSet<String>,
    timeout: Duration,
) -> Result<ReadBack, DemoError> {
    let consumer = kafka.plain_consumer()?;
    let mut end = bus::end_offsets(&consumer, topic)?;
    let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for (&partition, &high) in &end {
        let from = start.get(&partition).copied().unwrap_or(0);
        if high > from {
            remaining.insert(partition, high);
        }
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(from))
            .map_err(|e| DemoError::Kafka(format!("assign {topic}/{partition}: {e}")))?;
    }
    let mut read = ReadBack::default();
    consumer
        .assign(&assignment)
        .map_err(|e| DemoError::Kafka(format!("assign {topic}: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut last_message = Instant::now();
    while !remaining.is_empty() || last_message.elapsed() < SETTLE {
        if Instant::now() > deadline {
            return Err(DemoError::Kafka(format!(
                "reading {topic} back timed out after {timeout:?} with {} messages read; not drained: {remaining:?}",
                read.messages
            )));
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = result.map_err(|e| DemoError::Kafka(format!("reading {topic}: {e}")))?;
        let partition = message.partition();
        last_message = Instant::now();
        let next = message.offset() + 1;
        let known_end = end.entry(partition).or_insert(next);
        *known_end = (*known_end).max(next);
        if remaining.get(&partition).is_some_and(|&high| next >= high) {
            remaining.remove(&partition);
        }
        read.messages += 1;
        let ours = message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .is_some_and(|k| saga_ids.contains(k));
        if !ours {
            read.other_sagas += 1;
            continue;
        }
        match saga_tracker::codec::decode(message.payload().unwrap_or_default()) {
            Ok(event) => read.events.push(event),
            Err(error) => read.undecodable.push(Undecodable {
                partition,
                offset: message.offset(),
                error,
            }),
        }
    }
    read.end = end;
    Ok(read)
}
