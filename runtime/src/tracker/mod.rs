//! The [`Tracker`]: takes transitions from callers, encodes and delivers them on a worker thread.

mod builder;
mod clock;
mod command;
mod encode;
mod global;
mod lanes;
mod worker;

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub use builder::{BuildError, TrackerBuilder};
pub(crate) use clock::Stamp;
pub(crate) use command::{CallExtras, CallId, Command, StepEvent, start_status};
pub use global::{
    FlushGuard, InitError, WithTracker, current, init, unrecorded_events, with_default,
    with_default_async,
};
pub(crate) use global::{TrackerHandle, current_handle, note_unrecorded};
pub(crate) use lanes::Refused;

use crate::bounds::{self, Field, TooLarge};
use crate::codec::Framing;
use crate::event::StepError;
use crate::id::{Id, RawId};
use crate::otel::TraceIds;
use crate::registry::StepDescriptor;
use crate::sink::{Delivery, Envelope, Reporter, Sink, SinkError};
use crate::spool::{Spool, SpoolError};
use crate::stats::{Counters, TrackerStats};
use crate::transition::{RecordError, Transition};
use clock::Anchor;
use command::Pending;
use encode::{EventBuf, Parts};
use lanes::Lanes;

/// Records saga step transitions for one service. Cheap to clone (one shared inner state).
///
/// `record` never waits on the network: it timestamps the transition, captures the OpenTelemetry ids and
/// appends it to the calling thread's lane (a ring only this thread writes); a worker thread drains the lanes,
/// encodes each event and hands it to the [`Sink`]. Failed deliveries are counted and
/// spooled for [`replay_spool`](Tracker::replay_spool).
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("service", &self.inner.service)
            .field("sink", &self.inner.sink.describe())
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    service: Arc<str>,
    /// The threads' lanes: where events go.
    lanes: Arc<Lanes>,
    /// Flush requests, and events of a thread whose lane is gone (recorded while its thread-locals are destroyed).
    tx: Option<SyncSender<Command>>,
    wakeup: Arc<worker::Wakeup>,
    worker: Option<JoinHandle<()>>,
    sink: Arc<dyn Sink>,
    reporter: Arc<Reporter>,
    framing: Framing,
    shutdown_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the worker drain the lanes and stop.
        self.tx.take();
        self.wakeup.wake();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        if let Err(err) = self.sink.flush(self.shutdown_timeout) {
            tracing::warn!(%err, "saga-tracker: flush on shutdown did not finish; undelivered events are spooled as they time out");
        }
    }
}

/// The checks every recorded transition passes: a saga id, a saga type and a step name.
fn validate(transition: &Transition) -> Result<(), RecordError> {
    if transition.saga_id.is_empty() {
        return Err(RecordError::EmptySagaId {
            saga_type: transition.saga_type.clone().into_owned(),
            step: transition.step.clone().into_owned(),
        });
    }
    if transition.saga_type.is_empty() || transition.step.is_empty() {
        return Err(RecordError::EmptyName);
    }
    Ok(())
}

/// What [`Tracker::replay_spool`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Spooled events handed to the sink again.
    pub resent: usize,
    /// Spool files skipped because a replay already had them in flight.
    pub in_flight: usize,
    /// Spool files that could not be read, or `*.spool` files the spool did not name; renamed to `*.corrupt` and
    /// left for inspection.
    pub corrupt: usize,
}

/// Why [`Tracker::flush`] did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The worker did not drain its queue in time.
    #[error("saga-tracker worker did not drain its queue within {0:?}")]
    Timeout(Duration),
    /// The sink did not finish in time.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl Tracker {
    /// A builder: service name, sink and options.
    pub fn builder() -> TrackerBuilder {
        TrackerBuilder::default()
    }

    /// The service name written into every event.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// Records one transition: enqueues it and returns at once.
    ///
    /// If the worker's queue is full (the sink cannot keep up), the event is written to the spool on the
    /// caller's thread instead of waiting, and counted as failed and spooled.
    pub fn record(&self, transition: Transition) -> Result<(), RecordError> {
        self.record_at(transition, SystemTime::now())
    }

    /// [`record`](Tracker::record) with the transition's time given (`recordedAt`, and the UUIDv7's timestamp).
    pub fn record_at(&self, transition: Transition, at: SystemTime) -> Result<(), RecordError> {
        self.record_traced(transition, at, TraceIds::current())
    }

    /// [`record_at`](Tracker::record_at) with the OpenTelemetry ids already captured (a step guard captures them
    /// once, at STARTED, for both of its events).
    pub(crate) fn record_traced(
        &self,
        transition: Transition,
        at: SystemTime,
        trace: Option<TraceIds>,
    ) -> Result<(), RecordError> {
        self.check(&transition)?;
        let pending = Box::new(Pending {
            at,
            stamp: Stamp::now(),
            trace,
            transition,
        });
        if let Err((why, pending)) = self.inner.lanes.push_record(pending) {
            match why {
                Refused::NoLane => self.enqueue_shared(Command::Record(pending)),
                _ => self.spool_directly(&Parts::of_pending(&pending), why.reason()),
            }
        }
        Ok(())
    }

    /// Encodes `transition` exactly as this tracker's worker would (service name, framing, a fresh UUIDv7, the
    /// trace ids), into owned bytes: what the transactional outbox stores.
    #[cfg(feature = "outbox")]
    pub(crate) fn encode_owned(
        &self,
        transition: &Transition,
        at: SystemTime,
        trace: Option<&TraceIds>,
    ) -> Result<encode::Encoded, RecordError> {
        self.check(transition)?;
        let mut buf = EventBuf::default();
        let parts = Parts::of_transition(transition, at, trace);
        let envelope = buf.encode(&parts, &self.inner.service, self.inner.framing);
        Ok(encode::Encoded {
            event_id: envelope.event_id,
            payload: envelope.payload.to_vec(),
            traceparent: envelope.traceparent.map(str::to_owned),
        })
    }

    /// Checks the ids of a step call against their bounds (length comparisons only: the caller's path stays
    /// cheap); a refused call is counted and its events are not recorded.
    #[inline(always)]
    pub(crate) fn check_step(
        &self,
        descriptor: &'static StepDescriptor,
        saga_id: &RawId,
        extras: Option<&CallExtras>,
    ) -> Result<(), RecordError> {
        // an integer or UUID id is never empty and at most 40 bytes
        if saga_id
            .text_len()
            .is_none_or(|len| len != 0 && len <= bounds::SAGA_ID)
            && descriptor.saga_type.len() <= bounds::SAGA_TYPE
            && descriptor.step.len() <= bounds::STEP
            && extras.is_none()
        {
            return Ok(());
        }
        self.check_step_fully(descriptor, &saga_id.to_id(), extras)
    }

    /// [`check_step`](Tracker::check_step) of a call with extras, or over a bound.
    #[cold]
    fn check_step_fully(
        &self,
        descriptor: &'static StepDescriptor,
        saga_id: &Id,
        extras: Option<&CallExtras>,
    ) -> Result<(), RecordError> {
        if saga_id.is_empty() {
            return Err(RecordError::EmptySagaId {
                saga_type: descriptor.saga_type.to_owned(),
                step: descriptor.step.to_owned(),
            });
        }
        step_bounds(descriptor, saga_id, extras).map_err(|too_large| self.refuse(too_large))
    }

    /// Records a step call's start in this thread's lane (the `#[saga_step]` hot path: no allocation, no lock, no
    /// shared cache line written); returns the call's id, which its terminal event names.
    #[inline(always)]
    pub(crate) fn start_step(
        &self,
        trace: Option<&TraceIds>,
        extras: Option<&Arc<CallExtras>>,
        start: impl FnOnce() -> Command,
    ) -> Result<CallId, Refused> {
        self.inner.lanes.push_start(trace, extras, start)
    }

    /// Records the terminal event of `call` in this thread's lane, if its start is there.
    #[inline(always)]
    pub(crate) fn end_step(
        &self,
        call: CallId,
        end: impl FnOnce() -> Command,
    ) -> Result<(), (Refused, Option<Box<StepError>>)> {
        self.inner.lanes.push_end(call, end)
    }

    /// A step event that did not go into its lane as a start or a paired end: into this thread's lane whole, or the
    /// shared queue, or the spool.
    #[cold]
    pub(crate) fn step_refused(&self, why: Refused, event: StepEvent) {
        let why = match why {
            Refused::OtherLane => match self.inner.lanes.push_event(&event) {
                Ok(()) => return,
                Err(why) => why,
            },
            why => why,
        };
        match why {
            Refused::NoLane => self.enqueue_shared(Command::Event(Box::new(event))),
            _ => self.spool_directly(&Parts::of_event(&event, &Anchor::now()), why.reason()),
        }
    }

    /// Counts a transition refused for its size.
    #[cold]
    /// Refuses a transition without a saga id or names, or with one over its bound (counted as rejected).
    fn check(&self, transition: &Transition) -> Result<(), RecordError> {
        validate(transition)?;
        transition
            .check_bounds()
            .map_err(|too_large| self.refuse(too_large))
    }

    fn refuse(&self, too_large: TooLarge) -> RecordError {
        Counters::bump(&self.inner.reporter.counters.rejected);
        RecordError::TooLarge(too_large)
    }

    /// Hands an event to the worker through the shared queue (a thread without a lane).
    #[cold]
    fn enqueue_shared(&self, command: Command) {
        let Some(tx) = &self.inner.tx else {
            self.spool_command(command, "tracker is shut down");
            return;
        };
        match tx.try_send(command) {
            Ok(()) => self.inner.wakeup.wake_lingering(),
            Err(TrySendError::Full(command)) => {
                self.inner.wakeup.wake_lingering();
                self.spool_command(command, "tracker queue full")
            }
            Err(TrySendError::Disconnected(command)) => {
                self.spool_command(command, "tracker worker stopped")
            }
        }
    }

    /// [`spool_directly`](Tracker::spool_directly) of the event a command for the shared queue carries.
    #[cold]
    fn spool_command(&self, command: Command, reason: &str) {
        match command {
            Command::Event(event) => {
                self.spool_directly(&Parts::of_event(&event, &Anchor::now()), reason)
            }
            Command::Record(pending) => self.spool_directly(&Parts::of_pending(&pending), reason),
            _ => {}
        }
    }

    /// Encodes an event the worker cannot take and keeps it in the spool (counted as recorded and failed).
    #[cold]
    fn spool_directly(&self, parts: &Parts<'_>, reason: &str) {
        let mut buf = EventBuf::default();
        let envelope = buf.encode(parts, &self.inner.service, self.inner.framing);
        let reporter = &self.inner.reporter;
        Counters::bump(&reporter.counters.recorded);
        reporter.spool_failed(
            envelope.event_id,
            envelope.recorded_at,
            envelope.key,
            envelope.payload,
            reason,
        );
        if buf.was_truncated() {
            Counters::bump(&reporter.counters.truncated);
        }
    }

    /// Waits until every transition recorded so far, on any thread, has been delivered or spooled, or `timeout`
    /// passes (the worker drains every thread's lane, including the segment it is writing).
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        let start = Instant::now();
        if let Some(tx) = &self.inner.tx {
            let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
            if tx.send(Command::Flush(done_tx)).is_ok() {
                self.inner.wakeup.wake();
                done_rx
                    .recv_timeout(timeout)
                    .map_err(|_| FlushError::Timeout(timeout))?;
            }
        }
        let left = timeout.saturating_sub(start.elapsed());
        self.inner.sink.flush(left)?;
        Ok(())
    }

    /// Re-sends every spooled event with its original eventId and idempotencyKey (the bytes are unchanged), in
    /// recorded order (a saga's events in the order they were recorded). Each spool file is removed only when the
    /// sink acknowledges the event; call [`flush`](Tracker::flush) to wait for that.
    ///
    /// Memory is bounded by the spool's walk chunk ([`spool_replay_chunk`](TrackerBuilder::spool_replay_chunk),
    /// 65,536 names, 1.5 MiB), not by the number of spooled events: the directory is read a chunk at a time (see
    /// [`Spool::walk`]); the events in flight are bounded by the sink (librdkafka's queue for a `KafkaSink`). A
    /// file is sent at most once per replay, and not again while a replay has it in flight; an event spooled
    /// while a replay runs may wait for the next replay.
    pub fn replay_spool(&self) -> Result<ReplayReport, SpoolError> {
        let Some(spool) = &self.inner.reporter.spool else {
            return Ok(ReplayReport::default());
        };
        let mut report = ReplayReport::default();
        let mut walk = spool.walk();
        for key in walk.by_ref() {
            let key = key?;
            if !spool.claim(key) {
                report.in_flight += 1;
                continue;
            }
            let path = spool.path_of(key);
            let event = match Spool::read(&path) {
                Ok(event) => event,
                // Delivered and removed by an earlier replay between listing and claiming.
                Err(SpoolError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    let _ = spool.release(key, false);
                    continue;
                }
                Err(err) => {
                    // A corrupt file cannot be sent; keep it aside for a person and go on with the rest.
                    tracing::error!(%err, "saga-tracker: spool file is corrupt; renamed to *.corrupt");
                    let _ = spool.release(key, false);
                    let _ = Spool::set_aside(&path);
                    report.corrupt += 1;
                    continue;
                }
            };
            let (event_id, recorded_at) = crate::sink::identity(&event.payload);
            let delivery = Delivery::replay(self.inner.reporter.clone(), key);
            let envelope = Envelope {
                key: &event.key,
                payload: &event.payload,
                event_id,
                recorded_at,
                traceparent: None,
            };
            self.inner.sink.send(envelope, delivery);
            report.resent += 1;
        }
        report.corrupt += walk.set_aside();
        Ok(report)
    }

    /// The spool directory, if spooling is on.
    pub fn spool_dir(&self) -> Option<&std::path::Path> {
        self.inner.reporter.spool.as_ref().map(Spool::dir)
    }

    /// Events currently waiting in the spool.
    pub fn spooled_pending(&self) -> Result<usize, SpoolError> {
        match &self.inner.reporter.spool {
            Some(spool) => spool.count(),
            None => Ok(0),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> TrackerStats {
        self.inner.reporter.counters.snapshot()
    }

    /// The last delivery error, if any, e.g. `delivery of … failed: Message timed out`.
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .reporter
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
    }

    /// Flushes and gives up this handle. The worker stops, after draining its queue and flushing the sink, when the
    /// last clone is dropped.
    pub fn shutdown(self, timeout: Duration) -> Result<(), FlushError> {
        self.flush(timeout)
    }

    /// A description of the sink.
    pub fn sink_description(&self) -> String {
        self.inner.sink.describe()
    }
}

/// The ids and names of a step event against their bounds (free text is cut later, by the worker).
#[inline]
fn step_bounds(
    d: &StepDescriptor,
    saga_id: &Id,
    extras: Option<&CallExtras>,
) -> Result<(), TooLarge> {
    bounds::check_len(Field::SagaId, saga_id.len())?;
    bounds::check_len(Field::SagaType, d.saga_type.len())?;
    bounds::check_len(Field::Step, d.step.len())?;
    match extras.and_then(|e| e.order_id.as_ref()) {
        Some(order) => bounds::check_len(Field::OrderId, order.len()),
        None => Ok(()),
    }
}
