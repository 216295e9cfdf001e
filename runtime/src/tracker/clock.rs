//! One clock read per event on the caller's thread: the CPU's time-stamp counter (`quanta`, calibrated once
//! against the OS's monotonic clock; the OS clock where the TSC is not invariant). The worker turns the raw
//! counts into wall-clock time (`recordedAt`, the UUIDv7's timestamp) and durations, from an anchor pair
//! (counter, `SystemTime`) it reads once per round, so the caller never reads the wall clock.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();

/// The process's calibrated counter (calibrated on first use: a tracker's builder does it, off the hot path).
#[inline]
pub(crate) fn clock() -> &'static quanta::Clock {
    CLOCK.get_or_init(quanta::Clock::new)
}

/// A raw counter reading: the time of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(u64);

impl Stamp {
    /// Reads the counter (a few ns: no system call, no wall clock).
    #[inline]
    pub(crate) fn now() -> Stamp {
        Stamp(clock().raw())
    }

    /// The time from `earlier` to this stamp (zero if `earlier` is later).
    #[inline]
    pub(crate) fn since(self, earlier: Stamp) -> Duration {
        if self.0 <= earlier.0 {
            return Duration::ZERO;
        }
        clock().delta(earlier.0, self.0)
    }
}

/// A counter reading and the wall-clock time read next to it: converts stamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anchor {
    stamp: Stamp,
    wall: SystemTime,
}

impl Anchor {
    /// Reads both clocks now.
    pub(crate) fn now() -> Anchor {
        Anchor {
            stamp: Stamp::now(),
            wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of `stamp` (stamps are converted within a round of being taken, so the drift between
    /// the counter and a slewed wall clock does not accumulate).
    #[inline]
    pub(crate) fn wall(&self, stamp: Stamp) -> SystemTime {
        if stamp >= self.stamp {
            self.wall + stamp.since(self.stamp)
        } else {
            self.wall
                .checked_sub(self.stamp.since(stamp))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_convert_to_the_wall_clock() {
        let before = SystemTime::now();
        let stamp = Stamp::now();
        std::thread::sleep(Duration::from_millis(20));
        let anchor = Anchor::now();
        let after = SystemTime::now();
        let wall = anchor.wall(stamp);
        // within a millisecond of the wall-clock reads around it
        assert!(
            wall + Duration::from_millis(1) >= before,
            "{wall:?} {before:?}"
        );
        assert!(wall <= after, "{wall:?} {after:?}");
        let later = Stamp::now();
        assert!(later.since(stamp) >= Duration::from_millis(20));
        assert_eq!(stamp.since(later), Duration::ZERO);
    }
}
