//! The tracker's worker thread: turns the events of the callers' lanes into framed Avro messages and hands them to the sink.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use super::clock::{Anchor, Stamp};
use super::command::{CallId, Command, StepEvent, Taken};
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

/// Open calls by id: a map with a multiplicative hash (the ids are the worker's own, no hostile input).
type Calls = HashMap<CallId, StepEvent, BuildHasherDefault<CallHasher>>;

/// Hashes a [`CallId`] (two integers) with one multiplication.
#[derive(Default)]
struct CallHasher(u64);

impl Hasher for CallHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
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
        let mut deliver = |parts: &Parts<'_>| {
            Counters::bump(&reporter.counters.recorded);
            let envelope = buf.encode(parts, &service, framing);
            sink.send(envelope, Delivery::live(&reporter));
            if buf.was_truncated() {
                Counters::bump(&reporter.counters.truncated);
            }
        };
        // The starts delivered whose terminal events have not come yet (a terminal event names its start).
        let mut open = Calls::default();
        let mut handle = |taken: Taken, anchor: &Anchor| {
            let event = match taken {
                Taken::Record(pending) => return deliver(&Parts::of_pending(&pending)),
                Taken::Step(event) => event,
                Taken::End {
                    lane,
                    call,
                    at,
                    status,
                    error,
                } => match open.remove(&CallId { lane, n: call }) {
                    Some(start) => StepEvent {
                        status,
                        at,
                        started: start.at,
                        error,
                        call: None,
                        ..start
                    },
                    None => {
                        // Cannot happen: a start is taken before its end (it was pushed first, in the same lane).
                        Counters::bump(&reporter.counters.lost);
                        tracing::error!(
                            "saga-tracker: a step's terminal event came without its start; dropped"
                        );
                        return;
                    }
                },
            };
            deliver(&Parts::of_event(&event, anchor));
            match event.call {
                Some(call) if event.status.is_terminal() => {
                    open.remove(&call);
                }
                Some(call) => {
                    open.insert(call, event);
                }
                None => {}
            }
        };
        // Events taken from the lanes wait here until they are delivered in the order of their stamps.
        let mut batch: Vec<Taken> = Vec::new();
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
            let mut from_lanes = lanes.drain(true, &mut scratch, &mut |c| batch.push(c));
            let mut disconnected = false;
            loop {
                match rx.try_recv() {
                    Ok(Command::Flush(done)) => flushes.push(done),
                    Ok(Command::Event(event)) => batch.push(Taken::Step(*event)),
                    Ok(Command::Record(pending)) => batch.push(Taken::Record(pending)),
                    // Lane slots travel in lanes only.
                    Ok(_) => {}
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
                from_lanes += lanes.drain(true, &mut scratch, &mut |c| batch.push(c));
            }
            let taken = batch.len() - before;
            // The lanes' events are counted by the drain; the shared queue's here.
            lanes.hold(taken - from_lanes);
            // Each lane's events are already in stamp order: the sort merges runs.
            batch.sort_by_key(Taken::stamp);
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
