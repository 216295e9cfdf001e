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
use crate::sink::{Delivery, Reporter, Sink, Target};
use crate::stats::Counters;

/// Hand-off between callers and the worker, built so a caller never pays for a wake-up (a futex call costs
/// microseconds — more than recording itself — and on a busy machine it can hand the caller's core to the worker):
/// the worker drains the queue, then lingers [`LINGER`] and drains again (librdkafka lingers 5 ms before a batch
/// anyway). Callers wake it early only when [`WAKE_AT`] events pile up within one linger; flush and shutdown
/// wake it at once. Idle, the worker wakes 200 times a second to find nothing, which costs next to nothing.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    lingering: AtomicBool,
    /// Set by flush and shutdown: the next round drains everything, not just its batch.
    drain_all: AtomicBool,
    /// Events queued since the worker's last round, as callers report them (in steps of [`REPORT_EVERY`] per
    /// thread), taken by the worker once per round: alone on its cache lines.
    queued: crate::stats::Padded<AtomicUsize>,
    thread: OnceLock<Thread>,
}

/// How long the worker waits for more events before it drains again.
pub(crate) const LINGER: Duration = Duration::from_millis(5);
/// Queued events at which a caller wakes a lingering worker early.
pub(crate) const WAKE_AT: usize = 4096;
/// A thread reports its pushes to [`Wakeup::queued`] once per this many: one shared atomic add per 256 events
/// instead of one per event (with many threads recording, a per-event add moves that line between cores).
pub(crate) const REPORT_EVERY: usize = 256;

thread_local! {
    /// Pushes by this thread not yet reported to `queued` (any tracker: the count only paces wake-ups).
    static UNREPORTED: Cell<usize> = const { Cell::new(0) };
}

impl Wakeup {
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
            if queued >= WAKE_AT && self.lingering.swap(false, Ordering::AcqRel) {
                self.unpark();
            }
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
    let live = Arc::new(Target::Live(reporter.clone()));
    let mut deliver = |parts: &Parts<'_>| {
        Counters::bump(&reporter.counters.recorded);
        let envelope = buf.encode(parts, &service, framing);
        sink.send(envelope, Delivery::live(&live));
    };
    let mut handle = |command: Command| match command {
        Command::Step(record) => deliver(&Parts::of_step(&record)),
        Command::Record(pending) => deliver(&Parts::of_pending(&pending)),
        Command::Flush(done) => {
            let _ = done.send(());
        }
    };
    loop {
        // A round takes the batch callers reported before it began, so the worker stays a batch behind them
        // instead of chasing the slot each of them is writing (that moves a cache line between cores per event).
        // Flush and shutdown drain everything; so does a round with nothing reported (a trickle of events, or
        // the last few of a burst: callers report in steps of REPORT_EVERY).
        let drain_all = wakeup.drain_all.swap(false, Ordering::AcqRel);
        let counted = wakeup.queued.swap(0, Ordering::AcqRel);
        let mut budget = if drain_all || counted == 0 {
            usize::MAX
        } else {
            counted
        };
        while budget > 0 {
            match rx.try_recv() {
                Ok(command) => {
                    handle(command);
                    budget -= 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        wakeup.lingering.store(true, Ordering::Release);
        std::thread::park_timeout(LINGER);
        wakeup.lingering.store(false, Ordering::Release);
    }
}
