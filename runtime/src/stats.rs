//! Delivery counters, readable from a [`Tracker`](crate::Tracker) at any time.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a tracker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Transitions recorded (each becomes one event). Counted when the tracker's worker takes one from its queue,
    /// or when one is spooled on the caller's thread: up to one linger (10 ms when idle) behind the calls; after
    /// [`Tracker::flush`](crate::Tracker::flush) it counts every call.
    pub recorded: u64,
    /// Events the sink acknowledged (Kafka: acked by the brokers), including replayed ones.
    pub delivered: u64,
    /// Delivery attempts that failed (message timeout, broker down, queue full, ...).
    pub failed: u64,
    /// Events written to the local spool after a failure.
    pub spooled: u64,
    /// Spooled events delivered by [`Tracker::replay_spool`](crate::Tracker::replay_spool) and removed from the spool.
    pub replayed: u64,
    /// Events that failed and could not be spooled either (no spool, or the spool write failed). Should stay 0.
    pub lost: u64,
    /// Transitions refused at record time because an id or name is over its bound
    /// ([`bounds`](crate::bounds)): `RecordError::TooLarge`. Not recorded, not counted in `recorded`.
    pub rejected: u64,
    /// Events recorded with free text cut to its bound (error kind or message, metadata values; metadata entries
    /// dropped), marked `…[truncated]`.
    pub truncated: u64,
}

/// Keeps its value on its own cache lines (128 bytes covers adjacent-line prefetching), so a counter that callers
/// bump does not share a line with what the worker and librdkafka's threads write.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Bumped on the worker's thread (and a caller's when it spools directly); the others on the worker's and
    /// librdkafka's. Padded away from the delivery counters, which librdkafka's thread bumps concurrently.
    pub recorded: Padded<AtomicU64>,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub lost: AtomicU64,
    pub rejected: AtomicU64,
    pub truncated: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TrackerStats {
        TrackerStats {
            recorded: self.recorded.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            spooled: self.spooled.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
        }
    }
}
