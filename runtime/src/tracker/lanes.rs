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
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rtrb::{Consumer, Producer, PushError, RingBuffer};

use super::command::{
    CallExtras, CallId, Command, Detail, Pending, StepEvent, Taken, start_status,
};
use super::worker::Wakeup;
use crate::event::StepError;
use crate::otel::TraceIds;

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
pub(crate) struct Lane {
    /// Unique in the process: a call's terminal event is paired with its start within one lane.
    id: NonZeroU64,
    segments: Mutex<VecDeque<Consumer<Command>>>,
    /// The worker's reading state of this lane (only the worker locks it).
    assembly: Mutex<Assembly>,
}

/// What the worker has read of a lane: the starts counted so far (a call's number), and the slots read for the
/// next start.
#[derive(Default)]
struct Assembly {
    starts: u64,
    trace: Option<TraceIds>,
    extras: Option<Arc<CallExtras>>,
    detail: Option<Detail>,
}

impl Assembly {
    /// The event of `command`, read from lane `lane` in order (`None` for a slot that belongs to the next start).
    fn take(&mut self, lane: NonZeroU64, command: Command) -> Option<Taken> {
        match command {
            Command::Step {
                descriptor,
                saga_id,
                at,
                attempt,
            } => {
                let n = self.starts;
                self.starts += 1;
                let (status, started, error, call) = match self.detail.take() {
                    Some(d) => (d.status, d.started, d.error, d.opened),
                    None => (start_status(descriptor), at, None, Some(CallId { lane, n })),
                };
                Some(Taken::Step(StepEvent {
                    descriptor,
                    saga_id: saga_id.into_id(),
                    status,
                    attempt,
                    at,
                    started,
                    trace: self.trace.take(),
                    extras: self.extras.take(),
                    error,
                    call,
                }))
            }
            Command::End {
                call,
                at,
                status,
                error,
            } => Some(Taken::End {
                lane,
                call,
                at,
                status,
                error,
            }),
            Command::Trace(trace) => {
                self.trace = Some(trace);
                None
            }
            Command::Extras(extras) => {
                self.extras = Some(extras);
                None
            }
            Command::Detail(detail) => {
                self.detail = Some(detail);
                None
            }
            Command::Event(event) => Some(Taken::Step(*event)),
            Command::Record(pending) => Some(Taken::Record(pending)),
            // Flushes travel in the shared queue only.
            Command::Flush(done) => {
                let _ = done.send(());
                None
            }
        }
    }
}

impl Lane {
    fn segments(&self) -> MutexGuard<'_, VecDeque<Consumer<Command>>> {
        self.segments.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn assembly(&self) -> MutexGuard<'_, Assembly> {
        self.assembly.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Lane ids (unique in the process).
static LANE_IDS: AtomicU64 = AtomicU64::new(0);

/// A thread's end of one tracker's lane.
struct Writer {
    lanes: Arc<Lanes>,
    lane: Arc<Lane>,
    /// The lane's id (read per event: kept here, not behind the `Arc`).
    lane_id: NonZeroU64,
    producer: Producer<Command>,
    /// Starts pushed so far: the next start's number.
    starts: u64,
}

thread_local! {
    /// This thread's writers, the one used last first (a service has one tracker; tests switch between a few).
    static WRITERS: RefCell<Vec<Writer>> = const { RefCell::new(Vec::new()) };
}

/// Why an event did not go into this thread's lane (the caller still has the event: it spools it, or sends it
/// through the shared queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The tracker's segments hold its queue capacity.
    Full,
    /// This thread has no lane now (its thread-locals are being destroyed): use the shared queue.
    NoLane,
    /// The worker has stopped.
    Stopped,
    /// A terminal event on another thread than its start's (an async step's task moved): it goes unpaired.
    OtherLane,
}

impl Refused {
    /// Why an event refused this way is spooled.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::Full | Refused::OtherLane => "tracker queue full",
            Refused::NoLane => "tracker is shut down",
            Refused::Stopped => "tracker worker stopped",
        }
    }
}

/// Whether a push may take the tracker over its queue capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// Within the capacity.
    Bounded,
    /// Always: the end of a call whose start is in a lane (the worker holds the start until its end comes; the
    /// overshoot is bounded by the calls in flight).
    Always,
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

    /// Runs `f` on this thread's writer for these lanes (opening the lane on the thread's first event).
    #[inline(always)]
    fn with_writer<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Writer) -> Result<R, Refused>,
    ) -> Result<R, Refused> {
        // Without thread-locals `f` is dropped unrun: the caller still has the event.
        WRITERS
            .try_with(|writers| {
                let Ok(mut writers) = writers.try_borrow_mut() else {
                    return Err(Refused::NoLane);
                };
                if !writers.first().is_some_and(|w| Arc::ptr_eq(&w.lanes, self)) {
                    // leaves this thread's writer for these lanes first
                    self.new_writer(&mut writers)?;
                }
                // `f` called in one place only: inlined here
                match writers.first_mut() {
                    Some(writer) => f(writer),
                    None => Err(Refused::NoLane),
                }
            })
            .unwrap_or(Err(Refused::NoLane))
    }

    /// The first event of this thread for these lanes (or after using another tracker): finds or opens its lane.
    #[cold]
    fn new_writer<'w>(
        self: &Arc<Self>,
        writers: &'w mut Vec<Writer>,
    ) -> Result<&'w mut Writer, Refused> {
        writers.retain(|w| !w.lanes.closed.load(Ordering::Acquire));
        if let Some(i) = writers.iter().position(|w| Arc::ptr_eq(&w.lanes, self)) {
            writers.swap(0, i);
            return Ok(&mut writers[0]);
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Refused::Stopped);
        }
        // A thread's first segment is always granted, so every thread can record while the worker keeps up.
        self.slots.fetch_add(self.segment, Ordering::AcqRel);
        let (producer, consumer) = RingBuffer::new(self.segment);
        let lane = Arc::new(Lane {
            id: NonZeroU64::MIN.saturating_add(LANE_IDS.fetch_add(1, Ordering::Relaxed)),
            segments: Mutex::new(VecDeque::from([consumer])),
            assembly: Mutex::default(),
        });
        self.registry().push(lane.clone());
        writers.insert(
            0,
            Writer {
                lanes: self.clone(),
                lane_id: lane.id,
                lane,
                producer,
                starts: 0,
            },
        );
        Ok(&mut writers[0])
    }

    /// Appends a call's start (after its trace ids and extras, if any) to this thread's lane; returns the call's
    /// id, which its terminal event names.
    #[inline(always)]
    pub(crate) fn push_start(
        self: &Arc<Self>,
        trace: Option<&TraceIds>,
        extras: Option<&Arc<CallExtras>>,
        start: impl FnOnce() -> Command,
    ) -> Result<CallId, Refused> {
        self.with_writer(|writer| {
            if trace.is_none() && extras.is_none() {
                writer.push(start(), Admit::Bounded)?;
            } else {
                writer.push_start_group(trace, extras, start())?;
            }
            let n = writer.starts;
            writer.starts += 1;
            Ok(CallId {
                lane: writer.lane_id,
                n,
            })
        })
    }

    /// Appends the terminal event of `call` to this thread's lane, if its start is in this lane (else
    /// [`Refused::OtherLane`]); within the capacity or not (its start is held by the worker until it comes). A
    /// refused event's error comes back.
    #[inline(always)]
    pub(crate) fn push_end(
        self: &Arc<Self>,
        call: CallId,
        end: impl FnOnce() -> Command,
    ) -> Result<(), (Refused, Option<Box<StepError>>)> {
        let mut back = None;
        let pushed = self.with_writer(|writer| {
            if writer.lane_id != call.lane {
                return Err(Refused::OtherLane);
            }
            writer.push_keeping(end(), Admit::Always, &mut back)
        });
        pushed.map_err(|why| match back {
            Some(Command::End { error, .. }) => (why, error),
            _ => (why, None),
        })
    }

    /// Appends a whole step event (its slots: trace, extras, detail, then the step) to this thread's lane: a
    /// terminal event not paired with its start. Past the capacity only if it ends a call the worker holds.
    pub(crate) fn push_event(self: &Arc<Self>, event: &StepEvent) -> Result<(), Refused> {
        self.with_writer(|writer| {
            let detail = Detail {
                status: event.status,
                started: event.started,
                error: event.error.clone(),
                opened: event.call,
            };
            let n = 2 + usize::from(event.trace.is_some()) + usize::from(event.extras.is_some());
            let group = event
                .trace
                .map(Command::Trace)
                .into_iter()
                .chain(event.extras.clone().map(Command::Extras))
                .chain([
                    Command::Detail(detail),
                    Command::Step {
                        descriptor: event.descriptor,
                        saga_id: event.saga_id.clone().into(),
                        at: event.at,
                        attempt: event.attempt,
                    },
                ]);
            let admit = match event.call {
                Some(_) => Admit::Always,
                None => Admit::Bounded,
            };
            writer.push_group(n, group, admit)?;
            writer.starts += 1;
            Ok(())
        })
    }

    /// Appends a transition given to `Tracker::record`; a refused one comes back.
    pub(crate) fn push_record(
        self: &Arc<Self>,
        pending: Box<Pending>,
    ) -> Result<(), (Refused, Box<Pending>)> {
        let mut back = None;
        let mut pending = Some(pending);
        let pushed = self.with_writer(|writer| match pending.take() {
            Some(p) => writer.push_keeping(Command::Record(p), Admit::Bounded, &mut back),
            None => Ok(()),
        });
        let pending = match back {
            Some(Command::Record(p)) => Some(p),
            _ => pending,
        };
        match (pushed, pending) {
            (Err(why), Some(p)) => Err((why, p)),
            _ => Ok(()),
        }
    }

    /// Takes the events of every lane, each lane in its order, into `handle` (they count against the capacity
    /// until the worker [`release`](Lanes::release)s them); returns how many. With `all`
    /// false, only segments their threads have filled (the worker stays a batch behind the callers instead of
    /// reading the slot a caller is writing); with `all`, everything recorded so far.
    pub(crate) fn drain(
        &self,
        all: bool,
        scratch: &mut Vec<Arc<Lane>>,
        handle: &mut impl FnMut(Taken),
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
                    let mut assembly = lane.assembly();
                    let mut from_segment = 0;
                    for command in chunk {
                        if let Some(event) = assembly.take(lane.id, command) {
                            handle(event);
                            from_segment += 1;
                        }
                    }
                    // The worker holds them now: counted before their segment's slots are given back, so a
                    // drain that keeps up with a fast caller cannot take more than the capacity out of the count.
                    self.hold(from_segment);
                    taken += from_segment;
                }
                if abandoned && segment.is_empty() {
                    self.release(capacity);
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
    /// Appends one slot: a slot write and a store of the ring's tail.
    #[inline(always)]
    fn push(&mut self, command: Command, admit: Admit) -> Result<(), Refused> {
        self.push_keeping(command, admit, &mut None)
    }

    /// [`push`](Writer::push), a refused command left in `back` (a small result: no copy of a slot on return).
    #[inline(always)]
    fn push_keeping(
        &mut self,
        command: Command,
        admit: Admit,
        back: &mut Option<Command>,
    ) -> Result<(), Refused> {
        if admit == Admit::Bounded && self.lanes.over.load(Ordering::Relaxed) {
            *back = Some(command);
            return Err(Refused::Full);
        }
        match self.producer.push(command) {
            Ok(()) => Ok(()),
            Err(PushError::Full(command)) => self.chain_push(command, admit, back),
        }
    }

    /// Appends a call's start after its trace ids and extras, in one segment.
    #[cold]
    #[inline(never)]
    fn push_start_group(
        &mut self,
        trace: Option<&TraceIds>,
        extras: Option<&Arc<CallExtras>>,
        start: Command,
    ) -> Result<(), Refused> {
        let n = 1 + usize::from(trace.is_some()) + usize::from(extras.is_some());
        let group = trace
            .map(|t| Command::Trace(*t))
            .into_iter()
            .chain(extras.map(|e| Command::Extras(e.clone())))
            .chain([start]);
        self.push_group(n, group, Admit::Bounded)
    }

    /// Appends the `n` slots of `group` in one segment (the worker reads them in order).
    fn push_group(
        &mut self,
        n: usize,
        group: impl IntoIterator<Item = Command>,
        admit: Admit,
    ) -> Result<(), Refused> {
        if admit == Admit::Bounded && self.lanes.over.load(Ordering::Relaxed) {
            return Err(Refused::Full);
        }
        if self.producer.write_chunk_uninit(n).is_err() {
            self.chain(admit)?;
        }
        match self.producer.write_chunk_uninit(n) {
            Ok(chunk) => {
                chunk.fill_from_iter(group);
                Ok(())
            }
            // more slots than a segment holds (a tracker with a tiny queue capacity)
            Err(_) => Err(Refused::Full),
        }
    }

    #[cold]
    fn chain_push(
        &mut self,
        command: Command,
        admit: Admit,
        back: &mut Option<Command>,
    ) -> Result<(), Refused> {
        if let Err(why) = self.chain(admit) {
            *back = Some(command);
            return Err(why);
        }
        self.producer
            .push(command)
            .map_err(|PushError::Full(command)| {
                *back = Some(command);
                Refused::Full
            })
    }

    /// The segment is full: chains a fresh one (within the tracker's capacity, unless `admit` says always) and
    /// leaves this one to the worker.
    #[cold]
    fn chain(&mut self, admit: Admit) -> Result<(), Refused> {
        let lanes = &self.lanes;
        if lanes.closed.load(Ordering::Acquire) {
            return Err(Refused::Stopped);
        }
        let segment = lanes.segment;
        let held = lanes.slots.fetch_add(segment, Ordering::AcqRel) + segment;
        if held > lanes.capacity && admit == Admit::Bounded {
            lanes.slots.fetch_sub(segment, Ordering::AcqRel);
            lanes.wakeup.wake_lingering();
            return Err(Refused::Full);
        }
        if held > lanes.capacity {
            // An end admitted past the capacity: the starts that follow are refused (spooled by their callers)
            // until the worker has delivered enough. Only the worker clears the flag (`hold`/`release`); without
            // this, a thread whose segments fill at an end would chain segments while the worker is busy
            // delivering, past any bound.
            lanes.over.store(true, Ordering::Release);
        }
        let (producer, consumer) = RingBuffer::new(segment);
        self.lane.segments().push_back(consumer);
        // Dropping the old producer marks the full segment abandoned: the worker takes it whole.
        self.producer = producer;
        if held >= lanes.capacity / 2 {
            lanes.wakeup.wake_lingering();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::registry::{HandlerKind, StepDescriptor};
    use crate::tracker::clock::Stamp;

    static STEP: StepDescriptor = StepDescriptor {
        saga_type: "LaneSaga",
        step: "lane_step",
        variant: "LaneStep",
        kind: HandlerKind::Step,
        module_path: "lanes::tests",
        fn_name: "lane_step",
        is_method: false,
        file: file!(),
        line: line!(),
        step_index: 0,
        step_count: 1,
        compensable: false,
    };

    fn start(lanes: &Arc<Lanes>) -> Result<CallId, Refused> {
        lanes.push_start(None, None, || Command::Step {
            descriptor: &STEP,
            saga_id: Id::from("saga-1").into(),
            at: Stamp::now(),
            attempt: 1,
        })
    }

    #[test]
    fn a_drain_that_keeps_up_with_a_fast_caller_takes_no_more_than_the_capacity() {
        let capacity = 2_048;
        let lanes = Arc::new(Lanes::new(capacity, Arc::new(Wakeup::new())));
        for _ in 0..SEGMENT * 2 {
            start(&lanes).expect("within the capacity");
        }
        // The caller records one more event for every event the drain takes (as fast as the drain), until it is
        // refused or has recorded a hundred capacities.
        let (mut recorded, mut refused) = (0, false);
        let taken = lanes.drain(true, &mut Vec::new(), &mut |_| {
            if !refused && recorded < 100 * capacity {
                refused = start(&lanes).is_err();
                recorded += 1;
            }
        });
        assert!(
            refused,
            "the caller was never refused while the drain took {taken} events"
        );
        assert!(
            taken <= capacity + SEGMENT,
            "one drain took {taken} events with a capacity of {capacity}"
        );
    }
}
