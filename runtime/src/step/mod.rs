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
use crate::id::Id;
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
    saga_id: Id,
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
    /// The ids passed the tracker's checks (else both events are refused, each counted).
    admitted: bool,
    finished: bool,
}

impl StepGuard {
    /// Records STARTED (COMPENSATION_STARTED for a compensation) through the current tracker.
    #[inline(always)]
    pub fn start(descriptor: &'static StepDescriptor, ids: StepIds) -> StepGuard {
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
                .or_else(|| cause::last_failure(saga_id.as_str())),
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
        let mut guard = StepGuard {
            descriptor,
            tracker: crate::tracker::current_handle(),
            saga_id,
            attempt,
            extras,
            started: Stamp::now(),
            trace: TraceIds::current(),
            call: None,
            admitted: false,
            finished: false,
        };
        guard.record_start();
        guard
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
        self.finished = true;
        match describe.describe(outcome) {
            None => self.record_now(self.success_status(), None),
            Some(error) => self.record_now(self.failure_status(), Some(error)),
        }
    }

    /// Records a failure of kind `panic` with the panic's message, then resumes the panic unchanged.
    pub fn panicked(mut self, payload: Box<dyn Any + Send>) -> ! {
        self.finished = true;
        let error = StepError::new(PANIC_KIND, panic_message(payload.as_ref()));
        self.record_now(self.failure_status(), Some(error));
        drop(self);
        resume_unwind(payload)
    }

    fn success_status(&self) -> StepStatus {
        match self.descriptor.kind {
            HandlerKind::Step => StepStatus::Succeeded,
            HandlerKind::Compensation => StepStatus::Compensated,
        }
    }

    fn failure_status(&self) -> StepStatus {
        match self.descriptor.kind {
            HandlerKind::Step => StepStatus::Failed,
            HandlerKind::Compensation => StepStatus::CompensationFailed,
        }
    }

    /// Records the start event: its slot holds the ids; trace ids and extras, if any, go in slots before it.
    fn record_start(&mut self) {
        let d = self.descriptor;
        let Some(tracker) = &self.tracker else {
            crate::tracker::note_unrecorded(d.saga_type, d.step);
            return;
        };
        if let Err(err) = tracker.check_step(d, &self.saga_id, self.extras.as_deref()) {
            log_unrecorded(d, &err);
            return;
        }
        self.admitted = true;
        let start = || Command::Step {
            descriptor: d,
            saga_id: self.saga_id.clone(),
            at: self.started,
            attempt: self.attempt,
        };
        match tracker.start_step(self.trace.as_ref(), self.extras.as_ref(), start) {
            Ok(call) => self.call = Some(call),
            Err(why) => tracker.step_refused(why, self.event(self.started, start_status(d), None)),
        }
    }

    /// Records a terminal event now (its duration is the time since STARTED).
    fn record_now(&self, status: StepStatus, error: Option<StepError>) {
        let at = Stamp::now();
        let d = self.descriptor;
        if status == StepStatus::Failed {
            cause::remember_failure(self.saga_id.as_str(), d.step, self.attempt);
        }
        let Some(tracker) = &self.tracker else {
            crate::tracker::note_unrecorded(d.saga_type, d.step);
            return;
        };
        if !self.admitted
            && let Err(err) = tracker.check_step(d, &self.saga_id, self.extras.as_deref())
        {
            log_unrecorded(d, &err);
            return;
        }
        let mut error = error.map(Box::new);
        if let Some(call) = self.call {
            let end = || Command::End {
                call: call.n,
                at,
                status,
                error: error.take(),
            };
            if let Err((why, back)) = tracker.end_step(call, end) {
                tracker.step_refused(why, self.event(at, status, back.or(error)));
            }
        } else {
            tracker.step_refused(Refused::OtherLane, self.event(at, status, error));
        }
    }

    /// The whole event of this call at `at` with `status` (a start or terminal event that goes unpaired).
    fn event(&self, at: Stamp, status: StepStatus, error: Option<Box<StepError>>) -> StepEvent {
        StepEvent {
            descriptor: self.descriptor,
            saga_id: self.saga_id.clone(),
            status,
            attempt: self.attempt,
            at,
            started: self.started,
            trace: self.trace,
            extras: self.extras.clone(),
            error,
            call: self.call,
        }
    }
}

/// Logs an event that could not be recorded (its ids over their bounds, or no saga id).
#[cold]
fn log_unrecorded(d: &StepDescriptor, err: &crate::transition::RecordError) {
    tracing::error!(%err, handler = %d.fn_path(), "saga-tracker: a step transition could not be recorded");
}

impl Drop for StepGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let error = if std::thread::panicking() {
            StepError::new(PANIC_KIND, "the step panicked")
        } else {
            StepError::new(
                CANCELLED_KIND,
                "the step's future was dropped before it completed",
            )
        };
        self.record_now(self.failure_status(), Some(error));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_step_guard_is_moved_without_a_memcpy_call() {
        // The generated code moves the guard into `run_sync_with` and the async body; up to 128 bytes the moves
        // are a few vector moves instead of a call to memcpy (callgrind: ~70 instructions per call).
        assert!(
            std::mem::size_of::<super::StepGuard>() <= 128,
            "{}",
            std::mem::size_of::<super::StepGuard>()
        );
    }
}
