//! The tracker's worker thread: turns the events of the callers' lanes into framed Avro messages and hands them to the sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use super::clock::{Anchor, Stamp};
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
    /// Set by flush and shutdown (the queue then holds the request; a round always drains every lane).
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
        // Events taken from the lanes wait here until they are delivered in the order of their stamps.
        let mut batch: Vec<Command> = Vec::new();
        let mut flushes = Vec::new();
        loop {
            // A round takes every lane's events recorded so far and delivers, in stamp order, those stamped before
            // the round began. A saga whose task moved between threads has its events in two lanes; an event
            // stamped before the round began was pushed before any later event of its saga was stamped (the task
            // moved after the push), so the round has it and the sort puts it first. Events stamped during the
            // round wait for the next one. Flush and shutdown deliver everything.
            wakeup.drain_all.store(false, Ordering::Release);
            let cutoff = Stamp::now();
            let anchor = Anchor::now();
            let before = batch.len();
            lanes.drain(true, &mut scratch, &mut |c| batch.push(c));
            let mut disconnected = false;
            loop {
                match rx.try_recv() {
                    Ok(Command::Flush(done)) => flushes.push(done),
                    Ok(command) => batch.push(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let everything = disconnected || !flushes.is_empty();
            if everything {
                // Everything recorded before the flush was asked for is in a lane or was in the queue.
                lanes.drain(true, &mut scratch, &mut |c| batch.push(c));
            }
            let taken = batch.len() - before;
            lanes.hold(taken);
            // Each lane's events are already in stamp order: the sort merges runs.
            batch.sort_by_key(Command::stamp);
            let ready = if everything {
                batch.len()
            } else {
                batch.partition_point(|c| c.stamp() < cutoff)
            };
            for command in batch.drain(..ready) {
                handle(command, &anchor);
            }
            lanes.release(ready);
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
            if disconnected {
                // The last handle is gone: no thread records to these lanes any more.
                lanes.close();
                return;
            }
            wakeup.lingering.store(true, Ordering::Release);
            std::thread::park_timeout(if taken == 0 && batch.is_empty() {
                IDLE_LINGER
            } else {
                LINGER
            });
            wakeup.lingering.store(false, Ordering::Release);
        }
    }
}
