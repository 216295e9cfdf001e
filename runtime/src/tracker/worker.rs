//! The tracker's worker thread: turns the events of the callers' lanes into framed Avro messages and hands them to the sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use super::clock::Anchor;
use super::command::Command;
use super::encode::{EventBuf, Parts};
use super::lanes::Lanes;
use crate::codec::Framing;
use crate::sink::{Delivery, Reporter, Sink};
use crate::stats::Counters;

/// Waking the worker, built so a caller never pays for a wake-up (a futex call costs microseconds — more than
/// recording itself — and the woken worker tends to be placed on the waker's core, where it takes time slices from
/// the handler): the worker drains the lanes, then lingers [`LINGER`] and drains again (librdkafka lingers 5 ms
/// before a batch anyway), or [`IDLE_LINGER`] after a round that found nothing. Callers wake it early only when
/// the lanes hold half the queue capacity, or all of it; flush and shutdown wake it at once.
#[derive(Debug)]
pub(crate) struct Wakeup {
    lingering: AtomicBool,
    /// Set by flush and shutdown: the next round drains everything, not just the filled segments.
    drain_all: AtomicBool,
    thread: OnceLock<Thread>,
}

/// How long the worker waits for more events before it drains again. Short, so a busy round's batch stays small
/// enough to be in cache when the worker reads it.
pub(crate) const LINGER: Duration = Duration::from_millis(2);
/// How long it waits after a round that found nothing: an idle service's worker wakes 100 times a second, and an
/// event recorded by a thread that then goes idle is taken within this long.
pub(crate) const IDLE_LINGER: Duration = Duration::from_millis(10);

impl Wakeup {
    pub(crate) fn new() -> Wakeup {
        Wakeup {
            lingering: AtomicBool::new(false),
            drain_all: AtomicBool::new(false),
            thread: OnceLock::new(),
        }
    }

    /// Wakes the worker if it is lingering (the lanes are filling up, or full).
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

/// What the worker thread owns.
pub(crate) struct Worker {
    pub rx: Receiver<Command>,
    pub lanes: Arc<Lanes>,
    pub wakeup: Arc<Wakeup>,
    pub service: Arc<str>,
    pub framing: Framing,
    pub sink: Arc<dyn Sink>,
    pub reporter: Arc<Reporter>,
}

impl Worker {
    pub(crate) fn run(self) {
        crate::priority::lower_own_priority();
        let Worker {
            rx,
            lanes,
            wakeup,
            service,
            framing,
            sink,
            reporter,
        } = self;
        let mut buf = EventBuf::default();
        let mut scratch = Vec::new();
        let mut handle = |command: Command, anchor: &Anchor| match Parts::of(&command, anchor) {
            Some(parts) => {
                Counters::bump(&reporter.counters.recorded);
                let envelope = buf.encode(&parts, &service, framing);
                sink.send(envelope, Delivery::live(&reporter));
                if buf.was_truncated() {
                    Counters::bump(&reporter.counters.truncated);
                }
            }
            None => {
                if let Command::Flush(done) = &command {
                    let _ = done.send(());
                }
            }
        };
        loop {
            // A round takes the segments callers have filled, so the worker stays a batch behind them instead of
            // chasing the slot each of them is writing. Flush and shutdown drain everything; so does a round that
            // found no filled segment (a trickle of events, or the last few of a burst).
            let drain_all = wakeup.drain_all.swap(false, Ordering::AcqRel);
            let anchor = Anchor::now();
            let mut taken = lanes.drain(drain_all, &mut scratch, &mut |c| handle(c, &anchor));
            if taken == 0 && !drain_all {
                taken = lanes.drain(true, &mut scratch, &mut |c| handle(c, &anchor));
            }
            loop {
                match rx.try_recv() {
                    Ok(Command::Flush(done)) => {
                        // Everything recorded before the flush was asked for is in a lane or ahead in this queue.
                        taken += lanes.drain(true, &mut scratch, &mut |c| handle(c, &anchor));
                        let _ = done.send(());
                    }
                    Ok(command) => {
                        handle(command, &anchor);
                        taken += 1;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        // The last handle is gone: no thread records to these lanes any more.
                        lanes.drain(true, &mut scratch, &mut |c| handle(c, &anchor));
                        lanes.close();
                        return;
                    }
                }
            }
            wakeup.lingering.store(true, Ordering::Release);
            std::thread::park_timeout(if taken == 0 { IDLE_LINGER } else { LINGER });
            wakeup.lingering.store(false, Ordering::Release);
        }
    }
}
