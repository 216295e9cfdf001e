//! What `#[saga_step]` / `#[saga_compensation]` expand to at run time: a [`StepGuard`] that records the start
//! event when created and exactly one terminal event: on the returned outcome, on a panic (kind `panic`), or
//! when dropped unfinished (kind `cancelled`: an async step whose future was dropped).
//!
//! The hot path (STARTED + SUCCEEDED) allocates nothing for a saga id of up to [`Id::INLINE`] bytes (a UUID or an
//! integer): the id travels inline in the start event's lane slot (the terminal event names the call by its number
//! in the lane, and the worker pairs the two); saga type and step are the descriptor's
//! `&'static str`s; nothing is formatted unless the step fails. An order id or metadata costs one allocation per
//! call, shared by both events.

mod cause;
mod context;
mod ids;
mod outcome;
mod run;

use std::any::Any;
use std::panic::resume_unwind;
use std::sync::Arc;

pub use cause::{Cause, Scoped};
pub use context::*;
pub use ids::*;
pub use outcome::*;
pub use run::*;

use crate::event::{StepError, StepStatus};
use crate::id::RawId;
use crate::otel::TraceIds;
use crate::registry::{HandlerKind, StepDescriptor};
use crate::tracker::{
    CallExtras, CallId, Command, Refused, Stamp, StepEvent, TrackerHandle, start_status,
};

/// The error kind recorded when a step panics.
pub const PANIC_KIND: &str = "panic";
/// The error kind recorded when an async step's future is dropped before it completes.
pub const CANCELLED_KIND: &str = "cancelled";

/// Records one handler call: the start event on [`StepGuard::start`], then exactly one terminal event.
#[derive(Debug)]
#[must_use = "a step guard records its terminal event when finished or dropped"]
pub struct StepGuard {
    descriptor: &'static StepDescriptor,
    tracker: Option<TrackerHandle>,
    /// An integer or UUID id stays unformatted: the worker writes it out.
    saga_id: RawId,
    attempt: i32,
    /// Order id and metadata, when the step has any: one allocation shared by both events.
    extras: Option<Arc<CallExtras>>,
    /// When STARTED was recorded: one read of the CPU's counter per event (no system call); the worker derives
    /// wall-clock times and the duration from the stamps.
    started: Stamp,
    /// The OpenTelemetry ids of the span the step started in, used for its start and its end event.
    trace: Option<TraceIds>,
    /// The start's place in its lane, when it went into one: the terminal event then names it (and carries only
    /// its time, status and error) if it ends on the same thread.
    call: Option<CallId>,
    /// What became of the start; [`Recorded::Finished`] once the terminal event is recorded.
    state: Recorded,
}

/// What became of a step call's start (with [`StepGuard::call`]: where its terminal event goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    /// Recorded: in this thread's lane (`call`), or whole outside it (the lane refused it; the terminal event then
    /// goes whole too).
    Yes,
    /// Not at all: no tracker, or ids over their bounds (the terminal event is counted, or refused, the same way).
    No,
    /// The terminal event is recorded.
    Finished,
}

impl StepGuard {
    /// Records STARTED (COMPENSATION_STARTED for a compensation) through the current tracker.
    #[inline(always)]
    pub fn start(descriptor: &'static StepDescriptor, ids: StepIds) -> StepGuard {
        let mut guard = StepGuard::unstarted(descriptor, ids);
        guard.record_start();
        guard
    }

    /// The guard of a call whose start is not recorded yet ([`record_start`](StepGuard::record_start)): made where
    /// it stays, so it is not copied after the start took its address.
    #[inline(always)]
    pub(crate) fn unstarted(descriptor: &'static StepDescriptor, ids: StepIds) -> StepGuard {
        let StepIds {
            saga_id,
            order_id,
            attempt,
            metadata,
            cause,
        } = ids;
        // a compensation answers a failure: see `Cause` for where it comes from
        let cause = match descriptor.kind {
            HandlerKind::Step => None,
            HandlerKind::Compensation => cause
                .or_else(cause::scoped)
                .or_else(|| cause::last_failure(saga_id.to_id().as_str())),
        };
        let extras = if order_id.is_some() || !metadata.is_empty() || cause.is_some() {
            Some(Arc::new(CallExtras {
                order_id,
                metadata,
                cause,
            }))
        } else {
            None
        };
        StepGuard {
            descriptor,
            tracker: crate::tracker::current_handle(),
            saga_id,
            attempt,
            extras,
            started: Stamp::now(),
            trace: TraceIds::current(),
            call: None,
            state: Recorded::No,
        }
    }

    /// Records the terminal event for `outcome`, classifying a failure with [`StepOutcome::error_kind`].
    ///
    /// [`StepOutcome::error_kind`]: crate::StepOutcome::error_kind
    #[inline]
    pub fn finish<R: crate::StepOutcome>(self, outcome: &R) {
        self.finish_with(outcome, DefaultKind);
    }

    /// Records the terminal event for `outcome`, described (classified) by `describe`.
    #[inline(always)]
    pub fn finish_with<R, D: Describe<R>>(mut self, outcome: &R, describe: D) {
        self.finish_in_place(outcome, describe);
    }

    /// [`finish_with`](StepGuard::finish_with) without moving the guard (it is dropped where it is, finished).
    #[inline(always)]
    pub(crate) fn finish_in_place<R, D: Describe<R>>(&mut self, outcome: &R, describe: D) {
        let state = std::mem::replace(&mut self.state, Recorded::Finished);
        let at = Stamp::now();
        match describe.describe(outcome) {
            None => {
                let status = self.success_status();
                // the hot path: a success whose start is in this thread's lane
                if let (Some(call), Some(tracker)) = (self.call, &self.tracker) {
                    let end = || Command::End {
                        call: call.n,
                        at,
                        status,
                        error: None,
                    };
                    if let Err((why, _)) = tracker.end_step(call, end) {
                        self.end_refused(tracker, why, call, at, status, None);
                    }
                    return;
                }
                self.record_end(state, at, status, None)
            }
            Some(error) => self.record_end(state, at, self.failure_status(), Some(error)),
        }
    }

    /// Records a failure of kind `panic` with the panic's message, then resumes the panic unchanged.
    pub fn panicked(mut self, payload: Box<dyn Any + Send>) -> ! {
        let state = std::mem::replace(&mut self.state, Recorded::Finished);
        let error = StepError::new(PANIC_KIND, panic_message(payload.as_ref()));
        self.record_end(state, Stamp::now(), self.failure_status(), Some(error));
        drop(self);
        resume_unwind(payload)
    }

    #[inline(always)]
    fn success_status(&self) -> StepStatus {
        match self.descriptor.kind {
            HandlerKind::Step => StepStatus::Succeeded,
            HandlerKind::Compensation => StepStatus::Compensated,
        }
    }

    #[inline(always)]
    fn failure_status(&self) -> StepStatus {
        match self.descriptor.kind {
            HandlerKind::Step => StepStatus::Failed,
            HandlerKind::Compensation => StepStatus::CompensationFailed,
        }
    }

    /// Records the start event: its slot holds the ids; trace ids and extras, if any, go in slots before it.
    #[inline(always)]
    pub(crate) fn record_start(&mut self) {
        let d = self.descriptor;
        let Some(tracker) = &self.tracker else {
            crate::tracker::note_unrecorded(d.saga_type, d.step);
            return;
        };
        if let Err(err) = tracker.check_step(d, &self.saga_id, self.extras.as_deref()) {
            log_unrecorded(d, &err);
            return;
        }
        self.state = Recorded::Yes;
        let start = || Command::Step {
            descriptor: d,
            saga_id: self.saga_id.clone(),
            at: self.started,
            attempt: self.attempt,
        };
        match tracker.start_step(self.trace.as_ref(), self.extras.as_ref(), start) {
            Ok(call) => self.call = Some(call),
            Err(why) => self.start_refused(tracker, why),
        }
    }

    /// A start its lane refused goes whole to the shared queue or the spool.
    #[cold]
    fn start_refused(&self, tracker: &TrackerHandle, why: Refused) {
        let event = self.event(self.started, start_status(self.descriptor), None, None);
        tracker.step_refused(why, event);
    }

    /// Records a terminal event at `at` (its duration is the time since STARTED) on every path but a success
    /// paired in its lane: a failure, a start not in this lane (or not recorded), a lane that refused it.
    #[cold]
    #[inline(never)]
    fn record_end(&self, state: Recorded, at: Stamp, status: StepStatus, error: Option<StepError>) {
        let d = self.descriptor;
        if status == StepStatus::Failed {
            cause::remember_failure(self.saga_id.to_id().as_str(), d.step, self.attempt);
        }
        let Some(tracker) = &self.tracker else {
            crate::tracker::note_unrecorded(d.saga_type, d.step);
            return;
        };
        if state != Recorded::Yes {
            // refused again, and counted (else both events are refused, each counted)
            if let Err(err) = tracker.check_step(d, &self.saga_id, self.extras.as_deref()) {
                log_unrecorded(d, &err);
            }
            return;
        }
        let mut error = error.map(Box::new);
        let Some(call) = self.call else {
            let event = self.event(at, status, error, None);
            return tracker.step_refused(Refused::OtherLane, event);
        };
        let end = || Command::End {
            call: call.n,
            at,
            status,
            error: error.take(),
        };
        if let Err((why, back)) = tracker.end_step(call, end) {
            self.end_refused(tracker, why, call, at, status, back.or(error));
        }
    }

    /// A terminal event its start's lane refused goes whole (and the worker forgets the start).
    #[cold]
    #[inline(never)]
    fn end_refused(
        &self,
        tracker: &TrackerHandle,
        why: Refused,
        call: CallId,
        at: Stamp,
        status: StepStatus,
        error: Option<Box<StepError>>,
    ) {
        tracker.step_refused(why, self.event(at, status, error, Some(call)));
    }

    /// The whole event of this call at `at` with `status` (a start or terminal event that goes unpaired; `call`:
    /// the lane's start this terminal event ends, which the worker forgets).
    fn event(
        &self,
        at: Stamp,
        status: StepStatus,
        error: Option<Box<StepError>>,
        call: Option<CallId>,
    ) -> StepEvent {
        StepEvent {
            descriptor: self.descriptor,
            saga_id: self.saga_id.to_id(),
            status,
            attempt: self.attempt,
            at,
            started: self.started,
            trace: self.trace,
            extras: self.extras.clone(),
            error,
            call,
        }
    }
}

/// Logs an event that could not be recorded (its ids over their bounds, or no saga id).
#[cold]
fn log_unrecorded(d: &StepDescriptor, err: &crate::transition::RecordError) {
    tracing::error!(%err, handler = %d.fn_path(), "saga-tracker: a step transition could not be recorded");
}

impl Drop for StepGuard {
    #[inline(always)]
    fn drop(&mut self) {
        if self.state != Recorded::Finished {
            self.dropped_unfinished();
        }
    }
}

impl StepGuard {
    /// Dropped before finishing: its step panicked (unwinding through the guard) or its future was dropped.
    #[cold]
    #[inline(never)]
    fn dropped_unfinished(&mut self) {
        let state = std::mem::replace(&mut self.state, Recorded::Finished);
        let error = if std::thread::panicking() {
            StepError::new(PANIC_KIND, "the step panicked")
        } else {
            StepError::new(
                CANCELLED_KIND,
                "the step's future was dropped before it completed",
            )
        };
        self.record_end(state, Stamp::now(), self.failure_status(), Some(error));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_step_guard_is_moved_without_a_memcpy_call() {
        // The generated code moves the guard into the async body (a sync step's guard is made where it stays, in
        // `run_sync_with`); up to 128 bytes a move is a few vector moves instead of a call to memcpy (callgrind:
        // ~30 instructions per call).
        assert!(
            std::mem::size_of::<super::StepGuard>() <= 128,
            "{}",
            std::mem::size_of::<super::StepGuard>()
        );
    }
}
