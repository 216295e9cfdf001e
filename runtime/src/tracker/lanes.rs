//! Per-thread lanes from callers to the worker, after fastrace's collector: each thread that records to a tracker
//! writes its events into its own single-producer ring ([`rtrb`]), so a call writes no cache line another core
//! writes (one slot and the ring's tail, which the worker reads once per round), takes no lock and wakes nobody.
//!
//! A lane is a chain of ring segments of [`SEGMENT`] slots. When a thread's segment is full (the worker is a round
//! behind, as in a burst), the thread chains a fresh segment and leaves the full one to the worker: the worker
//! drains a lane's segments front to back, so a thread's events keep their order. All segments of a tracker
//! together hold at most its queue capacity (a thread's first segment is always granted); past that the caller
//! spools the event, as when the old shared queue was full.
//!
//! Nothing is lost when a thread exits: its ring's producer is dropped with the thread's locals, and the worker
//! drains the abandoned segments and then forgets the lane. Flush and shutdown drain every lane, including the
//! segments threads are still writing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rtrb::{Consumer, Producer, PushError, RingBuffer};

use super::command::Command;
use super::worker::Wakeup;

/// Slots per ring segment: about 60 KB of records; a burst chains more, freed once the worker has drained them.
pub(crate) const SEGMENT: usize = 512;

/// The lanes of one tracker: the worker's side, and the budget every thread's segments share.
pub(crate) struct Lanes {
    lanes: Mutex<Vec<Arc<Lane>>>,
    /// Slots of the segments not yet drained and freed by the worker.
    slots: AtomicUsize,
    /// The tracker's queue capacity: the most slots its segments hold together.
    capacity: usize,
    /// Slots per segment (the capacity, if smaller than [`SEGMENT`]).
    segment: usize,
    /// Set by the worker when it stops: a thread's writer for these lanes can be dropped.
    closed: AtomicBool,
    /// Set by the worker while the events it holds and the segments exceed the capacity (read per event, written
    /// once per round at most: the line stays in every caller's cache).
    over: AtomicBool,
    wakeup: Arc<Wakeup>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("slots", &self.slots.load(Ordering::Relaxed))
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// One thread's chain of segments, the oldest first.
#[derive(Default)]
pub(crate) struct Lane {
    segments: Mutex<VecDeque<Consumer<Command>>>,
}

impl Lane {
    fn segments(&self) -> MutexGuard<'_, VecDeque<Consumer<Command>>> {
        self.segments.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A thread's end of one tracker's lane.
struct Writer {
    lanes: Arc<Lanes>,
    lane: Arc<Lane>,
    producer: Producer<Command>,
}

thread_local! {
    /// This thread's writers, the one used last first (a service has one tracker; tests switch between a few).
    static WRITERS: RefCell<Vec<Writer>> = const { RefCell::new(Vec::new()) };
}

/// Why an event did not go into this thread's lane; the event comes back to the caller, boxed (a refusal is rare,
/// and a small result keeps the hot path from copying a whole event on return).
pub(crate) enum Refused {
    /// The tracker's segments hold its queue capacity.
    Full(Box<Command>),
    /// This thread has no lane now (its thread-locals are being destroyed): use the shared queue.
    NoLane(Box<Command>),
    /// The worker has stopped.
    Stopped(Box<Command>),
}

impl Lanes {
    /// Lanes holding at most `capacity` events together.
    pub(crate) fn new(capacity: usize, wakeup: Arc<Wakeup>) -> Lanes {
        Lanes {
            lanes: Mutex::new(Vec::new()),
            slots: AtomicUsize::new(0),
            capacity,
            segment: SEGMENT.min(capacity).max(1),
            closed: AtomicBool::new(false),
            over: AtomicBool::new(false),
            wakeup,
        }
    }

    fn registry(&self) -> MutexGuard<'_, Vec<Arc<Lane>>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends the event `make` builds to this thread's lane: a slot write and a store of the ring's tail.
    #[inline]
    pub(crate) fn push_with(
        self: &Arc<Self>,
        make: impl FnOnce() -> Command,
    ) -> Result<(), Refused> {
        let mut make = Some(make);
        let pushed = WRITERS.try_with(|writers| {
            let Ok(mut writers) = writers.try_borrow_mut() else {
                return None;
            };
            let make = make.take()?;
            Some(match writers.first_mut() {
                Some(writer) if Arc::ptr_eq(&writer.lanes, self) => writer.push_with(make),
                _ => self.push_new_writer(&mut writers, make()),
            })
        });
        match (pushed, make) {
            (Ok(Some(result)), _) => result,
            (_, Some(make)) => Err(Refused::NoLane(Box::new(make()))),
            // The closure took the event and always answers once it has.
            (_, None) => Ok(()),
        }
    }

    /// The first event of this thread for these lanes (or after using another tracker): finds or opens its lane.
    #[cold]
    fn push_new_writer(
        self: &Arc<Self>,
        writers: &mut Vec<Writer>,
        command: Command,
    ) -> Result<(), Refused> {
        writers.retain(|w| !w.lanes.closed.load(Ordering::Acquire));
        if let Some(i) = writers.iter().position(|w| Arc::ptr_eq(&w.lanes, self)) {
            writers.swap(0, i);
            return writers[0].push(command);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Stopped(Box::new(command)));
        }
        // A thread's first segment is always granted, so every thread can record while the worker keeps up.
        self.slots.fetch_add(self.segment, Ordering::AcqRel);
        let (producer, consumer) = RingBuffer::new(self.segment);
        let lane = Arc::new(Lane {
            segments: Mutex::new(VecDeque::from([consumer])),
        });
        self.registry().push(lane.clone());
        writers.insert(
            0,
            Writer {
                lanes: self.clone(),
                lane,
                producer,
            },
        );
        writers[0].push(command)
    }

    /// Takes the events of every lane, each lane in its order, into `handle`; returns how many. With `all`
    /// false, only segments their threads have filled (the worker stays a batch behind the callers instead of
    /// reading the slot a caller is writing); with `all`, everything recorded so far.
    pub(crate) fn drain(
        &self,
        all: bool,
        scratch: &mut Vec<Arc<Lane>>,
        handle: &mut impl FnMut(Command),
    ) -> usize {
        scratch.clear();
        scratch.extend(self.registry().iter().cloned());
        let mut taken = 0;
        let mut exited = false;
        for lane in scratch.iter() {
            loop {
                let Some(mut segment) = lane.segments().pop_front() else {
                    break;
                };
                // Abandoned (read first): its thread has moved on to a newer segment or exited, and every event
                // it wrote is visible.
                let abandoned = segment.is_abandoned();
                let ready = segment.slots();
                let capacity = segment.buffer().capacity();
                if (all || abandoned || ready == capacity)
                    && let Ok(chunk) = segment.read_chunk(ready)
                {
                    for command in chunk {
                        handle(command);
                    }
                    taken += ready;
                }
                if abandoned && segment.is_empty() {
                    self.slots.fetch_sub(capacity, Ordering::AcqRel);
                    continue;
                }
                lane.segments().push_front(segment);
                break;
            }
            exited |= lane.segments().is_empty();
        }
        if exited {
            // A lane whose thread has exited and whose last segment is drained stays empty.
            self.registry().retain(|lane| !lane.segments().is_empty());
        }
        scratch.clear();
        taken
    }

    /// The worker holds `n` more taken events until it delivers them: they count against the capacity.
    pub(crate) fn hold(&self, n: usize) {
        let held = self.slots.fetch_add(n, Ordering::AcqRel) + n;
        self.set_over(held);
    }

    fn set_over(&self, held: usize) {
        let over = held > self.capacity;
        if self.over.load(Ordering::Relaxed) != over {
            self.over.store(over, Ordering::Release);
        }
    }

    /// The worker delivered `n` of the events it held.
    pub(crate) fn release(&self, n: usize) {
        let held = self.slots.fetch_sub(n, Ordering::AcqRel).saturating_sub(n);
        self.set_over(held);
    }

    /// The worker has stopped: threads drop their writers for these lanes when they next record.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

impl Writer {
    #[inline]
    fn push_with(&mut self, make: impl FnOnce() -> Command) -> Result<(), Refused> {
        if self.lanes.over.load(Ordering::Relaxed) {
            return Err(Refused::Full(Box::new(make())));
        }
        if self.producer.is_full() {
            return self.chain(make());
        }
        self.push(make())
    }

    #[inline]
    fn push(&mut self, command: Command) -> Result<(), Refused> {
        match self.producer.push(command) {
            Ok(()) => Ok(()),
            Err(PushError::Full(command)) => self.chain(command),
        }
    }

    /// The segment is full: chains a fresh one (within the tracker's capacity) and leaves this one to the worker.
    #[cold]
    fn chain(&mut self, command: Command) -> Result<(), Refused> {
        let lanes = &self.lanes;
        if lanes.closed.load(Ordering::Acquire) {
            return Err(Refused::Stopped(Box::new(command)));
        }
        let segment = lanes.segment;
        let held = lanes.slots.fetch_add(segment, Ordering::AcqRel) + segment;
        if held > lanes.capacity {
            lanes.slots.fetch_sub(segment, Ordering::AcqRel);
            lanes.wakeup.wake_lingering();
            return Err(Refused::Full(Box::new(command)));
        }
        let (producer, consumer) = RingBuffer::new(segment);
        self.lane.segments().push_back(consumer);
        // Dropping the old producer marks the full segment abandoned: the worker takes it whole.
        self.producer = producer;
        if held >= lanes.capacity / 2 {
            lanes.wakeup.wake_lingering();
        }
        match self.producer.push(command) {
            Ok(()) => Ok(()),
            Err(PushError::Full(command)) => Err(Refused::Full(Box::new(command))),
        }
    }
}
