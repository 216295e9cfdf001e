//! The tracker's worker thread: turns queued transitions into framed Avro messages and hands them to the sink.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use super::command::Command;
use super::encode::{EventBuf, Parts};
use crate::codec::Framing;
use crate::sink::{Delivery, Reporter, Sink};
use crate::stats::Counters;

/// Hand-off between callers and the worker, built so a caller never pays for a wake-up (a futex call costs
/// microseconds — more than recording itself — and the woken worker tends to be placed on the waker's core, where
/// it takes time slices from the handler): the worker drains the queue, then lingers [`LINGER`] and drains again
/// (librdkafka lingers 5 ms before a batch anyway), or [`IDLE_LINGER`] after a round that found nothing. Callers
/// wake it early only when half the queue fills within one linger, or the queue is full; flush and shutdown wake
/// it at once.
#[derive(Debug)]
pub(crate) struct Wakeup {
    lingering: AtomicBool,
    /// Set by flush and shutdown: the next round drains everything, not just its batch.
    drain_all: AtomicBool,
    /// Events queued since the worker's last round, as callers report them (in steps of [`REPORT_EVERY`] per
    /// thread), taken by the worker once per round: alone on its cache lines.
    queued: crate::stats::Padded<AtomicUsize>,
    /// Reported events at which a caller wakes a lingering worker early: half the queue.
    wake_at: usize,
    thread: OnceLock<Thread>,
}

/// How long the worker waits for more events before it drains again. Short, so a busy round's batch stays small
/// enough to be in cache when the worker reads it (2 ms of a fast caller is ~2.5 MB of queue slots).
pub(crate) const LINGER: Duration = Duration::from_millis(2);
/// How long it waits after a round that found nothing: an idle service's worker wakes 100 times a second.
pub(crate) const IDLE_LINGER: Duration = Duration::from_millis(10);
/// A thread reports its pushes to [`Wakeup::queued`] once per this many: one shared atomic add per 256 events
/// instead of one per event (with many threads recording, a per-event add moves that line between cores).
pub(crate) const REPORT_EVERY: usize = 256;

thread_local! {
    /// Pushes by this thread not yet reported to `queued` (any tracker: the count only paces wake-ups).
    static UNREPORTED: Cell<usize> = const { Cell::new(0) };
}

impl Wakeup {
    /// For a queue of `capacity` events.
    pub(crate) fn new(capacity: usize) -> Wakeup {
        Wakeup {
            lingering: AtomicBool::new(false),
            drain_all: AtomicBool::new(false),
            queued: crate::stats::Padded(AtomicUsize::new(0)),
            wake_at: (capacity / 2).max(REPORT_EVERY),
            thread: OnceLock::new(),
        }
    }

    /// After a successful enqueue.
    #[inline]
    pub(crate) fn after_push(&self) {
        let unreported = UNREPORTED.with(|n| {
            let pushes = n.get() + 1;
            n.set(if pushes == REPORT_EVERY { 0 } else { pushes });
            pushes
        });
        if unreported == REPORT_EVERY {
            let queued = self.queued.fetch_add(REPORT_EVERY, Ordering::Relaxed) + REPORT_EVERY;
            if queued >= self.wake_at {
                self.wake_lingering();
            }
        }
    }

    /// Wakes the worker if it is lingering (the queue is filling up, or full).
    #[cold]
    pub(crate) fn wake_lingering(&self) {
        if self.lingering.swap(false, Ordering::AcqRel) {
            self.unpark();
        }
    }

    /// Wakes the worker to drain everything queued (flush, shutdown).
    pub(crate) fn wake(&self) {
        self.drain_all.store(true, Ordering::Release);
        self.unpark();
    }

    fn unpark(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    pub(crate) fn set_thread(&self, thread: Thread) {
        let _ = self.thread.set(thread);
    }
}

pub(crate) fn run(
    rx: Receiver<Command>,
    wakeup: Arc<Wakeup>,
    service: Arc<str>,
    framing: Framing,
    sink: Arc<dyn Sink>,
    reporter: Arc<Reporter>,
) {
    crate::priority::lower_own_priority();
    let mut buf = EventBuf::default();
    let mut deliver = |parts: &Parts<'_>| {
        Counters::bump(&reporter.counters.recorded);
        let envelope = buf.encode(parts, &service, framing);
        sink.send(envelope, Delivery::live(&reporter));
        if buf.was_truncated() {
            Counters::bump(&reporter.counters.truncated);
        }
    };
    let mut handle = |command: Command| match Parts::of(&command) {
        Some(parts) => deliver(&parts),
        None => {
            if let Command::Flush(done) = &command {
                let _ = done.send(());
            }
        }
    };
    loop {
        // A round takes the batch callers reported before it began, so the worker stays a batch behind them
        // instead of chasing the slot each of them is writing (that moves a cache line between cores per event).
        // Flush and shutdown drain everything; so does a round with nothing reported (a trickle of events, or
        // the last few of a burst: callers report in steps of REPORT_EVERY).
        let drain_all = wakeup.drain_all.swap(false, Ordering::AcqRel);
        let counted = wakeup.queued.swap(0, Ordering::AcqRel);
        let budget = if drain_all || counted == 0 {
            usize::MAX
        } else {
            counted
        };
        let mut taken = 0usize;
        while taken < budget {
            match rx.try_recv() {
                Ok(command) => {
                    handle(command);
                    taken += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        wakeup.lingering.store(true, Ordering::Release);
        std::thread::park_timeout(if taken == 0 { IDLE_LINGER } else { LINGER });
        wakeup.lingering.store(false, Ordering::Release);
    }
}
