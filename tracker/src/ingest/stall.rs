//! Stall detection: a partition is *stalled* when messages wait in it and ingestion made no progress on it for
//! the configured time (`--stall-after-seconds`).
//!
//! Two signals feed it: the ingest loop (a batch taken from the partition and not yet committed — a batch retried
//! because the database is down stays in flight), and librdkafka's statistics (messages behind the committed
//! offset, e.g. when fetching fails). Progress is a committed batch. The result is the
//! `saga_tracker_partition_stalled` gauge and the `degraded` state of `/healthz`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A topic and partition.
pub type PartitionKey = (String, i32);

#[derive(Debug, Default, Clone, Copy)]
struct PartitionWatch {
    /// Since when the statistics report messages behind the committed offset (None: none waiting).
    waiting_since: Option<Instant>,
    /// When a batch holding this partition's messages was last committed.
    progress_at: Option<Instant>,
    /// Since when the batch being written holds this partition's messages.
    in_flight_since: Option<Instant>,
}

impl PartitionWatch {
    /// How long messages have waited without progress, if they are waiting.
    fn waiting_for(&self, now: Instant) -> Option<Duration> {
        let in_flight = self
            .in_flight_since
            .map(|t| now.saturating_duration_since(t));
        let behind = self.waiting_since.map(|w| {
            let since = self.progress_at.map_or(w, |p| p.max(w));
            now.saturating_duration_since(since)
        });
        in_flight.max(behind)
    }
}

/// One stalled partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// How long messages have waited without progress.
    pub waiting_for: Duration,
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "partition {} of {} stalled: messages waiting, no progress for {} s",
            self.partition,
            self.topic,
            self.waiting_for.as_secs()
        )
    }
}

/// Tracks progress per partition. Shared by the ingest loop, the consumer's statistics callback and the HTTP
/// handlers.
#[derive(Debug)]
pub struct StallWatch {
    after: Duration,
    partitions: Mutex<BTreeMap<PartitionKey, PartitionWatch>>,
}

impl Default for StallWatch {
    /// Stalled after 60 s.
    fn default() -> Self {
        StallWatch::new(Duration::from_secs(60))
    }
}

impl StallWatch {
    /// A watch that reports a partition stalled after `after` without progress while messages wait.
    pub fn new(after: Duration) -> StallWatch {
        StallWatch {
            after,
            partitions: Mutex::new(BTreeMap::new()),
        }
    }

    /// The configured threshold.
    pub fn after(&self) -> Duration {
        self.after
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PartitionKey, PartitionWatch>> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// From the statistics: `behind` messages wait in a partition this consumer reads (0 when none, or when the
    /// partition is not assigned here).
    pub fn behind(&self, topic: &str, partition: i32, behind: i64) {
        let mut map = self.lock();
        let w = map.entry((topic.to_owned(), partition)).or_default();
        if behind > 0 {
            w.waiting_since.get_or_insert_with(Instant::now);
        } else {
            w.waiting_since = None;
        }
    }

    /// A batch with messages of these partitions is being written.
    pub fn batch_started<'a>(&self, partitions: impl IntoIterator<Item = &'a PartitionKey>) {
        let now = Instant::now();
        let mut map = self.lock();
        for key in partitions {
            map.entry(key.clone())
                .or_default()
                .in_flight_since
                .get_or_insert(now);
        }
    }

    /// The batch with messages of these partitions is committed.
    pub fn batch_done<'a>(&self, partitions: impl IntoIterator<Item = &'a PartitionKey>) {
        let now = Instant::now();
        let mut map = self.lock();
        for key in partitions {
            let w = map.entry(key.clone()).or_default();
            w.in_flight_since = None;
            w.progress_at = Some(now);
        }
    }

    /// Every known partition and whether it is stalled now.
    pub fn partitions(&self) -> Vec<(PartitionKey, bool)> {
        let now = Instant::now();
        self.lock()
            .iter()
            .map(|(k, w)| {
                let stalled = w.waiting_for(now).is_some_and(|d| d >= self.after);
                (k.clone(), stalled)
            })
            .collect()
    }

    /// The stalled partitions now.
    pub fn stalled(&self) -> Vec<Stall> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter_map(|((topic, partition), w)| {
                let waiting_for = w.waiting_for(now).filter(|d| *d >= self.after)?;
                Some(Stall {
                    topic: topic.clone(),
                    partition: *partition,
                    waiting_for,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        ("t".to_owned(), p)
    }

    #[test]
    fn a_batch_in_flight_too_long_stalls_its_partitions() {
        let w = StallWatch::new(Duration::ZERO);
        assert!(w.stalled().is_empty());
        w.batch_started(&[key(0), key(1)]);
        let stalled: Vec<i32> = w.stalled().iter().map(|s| s.partition).collect();
        assert_eq!(stalled, vec![0, 1]);
        w.batch_done(&[key(0), key(1)]);
        assert!(w.stalled().is_empty());
        assert_eq!(w.partitions(), vec![(key(0), false), (key(1), false)]);
    }

    #[test]
    fn waiting_messages_without_progress_stall() {
        let w = StallWatch::new(Duration::ZERO);
        w.behind("t", 2, 5);
        assert_eq!(w.stalled().len(), 1);
        assert!(w.stalled()[0].to_string().contains("partition 2 of t"));
        w.behind("t", 2, 0);
        assert!(w.stalled().is_empty());

        let w = StallWatch::new(Duration::from_secs(3600));
        w.behind("t", 2, 5);
        w.batch_started(&[key(2)]);
        assert!(w.stalled().is_empty(), "not yet an hour");
        assert_eq!(w.partitions(), vec![(key(2), false)]);
    }
}
