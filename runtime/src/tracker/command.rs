//! What callers put in their lanes and the worker's queue. A step call writes two slots of one cache line each (no
//! allocation for ids up to [`Id::INLINE`](crate::Id::INLINE) bytes): its start with the ids, and its end with only
//! the call's number, time, status and error; the worker pairs them. Transitions given to
//! [`Tracker::record`](crate::Tracker::record) travel boxed.

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::SystemTime;

use super::clock::Stamp;
use crate::event::{StepError, StepStatus};
use crate::id::{Id, RawId};
use crate::otel::TraceIds;
use crate::registry::{HandlerKind, StepDescriptor};
use crate::transition::Transition;

/// A transition given to `Tracker::record`, with what the caller's thread captured: time and trace.
#[derive(Debug)]
pub(crate) struct Pending {
    pub at: SystemTime,
    /// When it was recorded, on the counter step events use: the worker delivers events in this order.
    pub stamp: Stamp,
    pub trace: Option<TraceIds>,
    pub transition: Transition,
}

/// The order id and metadata of one step call, shared by its events (allocated only when a step has either).
#[derive(Debug)]
pub(crate) struct CallExtras {
    pub order_id: Option<Id>,
    pub metadata: Vec<(Cow<'static, str>, String)>,
    /// On a compensation: the idempotency key of the failure it answers.
    pub cause: Option<Arc<str>>,
}

/// A step call as its lane knows it: the lane's id and the call's number among the lane's [`Command::Step`]s (the
/// worker counts them in the same order, so a call's terminal event names its start by this number alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CallId {
    /// Never zero, so a step guard's `Option<CallId>` takes no more room than the id.
    pub lane: NonZeroU64,
    pub n: u64,
}

/// What a terminal event carries beyond its [`Command::Step`] slot when it is not paired with its start in one lane
/// (an async step that finished on another thread, or whose start did not go through a lane).
#[derive(Debug)]
pub(crate) struct Detail {
    pub status: StepStatus,
    /// The start event's stamp (for the duration).
    pub started: Stamp,
    pub error: Option<Box<StepError>>,
    /// The call's start, when it went through a lane: the worker forgets it.
    pub opened: Option<CallId>,
}

/// One step event with everything it says: assembled by the worker from a lane's slots, or built by a caller for
/// the shared queue or the spool. The worker derives the rest: eventId, recordedAt in µs (from the stamp), the
/// duration, saga type and step from the descriptor.
#[derive(Debug)]
pub(crate) struct StepEvent {
    pub descriptor: &'static StepDescriptor,
    pub saga_id: Id,
    pub status: StepStatus,
    pub attempt: i32,
    /// When the event happened: one counter read on the caller's thread.
    pub at: Stamp,
    /// When the call started (the start event's stamp; the same as `at` for a start event).
    pub started: Stamp,
    pub trace: Option<TraceIds>,
    pub extras: Option<Arc<CallExtras>>,
    pub error: Option<Box<StepError>>,
    /// For a start from a lane: its call (its terminal event names it); for a terminal event: the start to forget.
    pub call: Option<CallId>,
}

/// The start status of a descriptor's calls (the start slot does not carry it).
pub(crate) fn start_status(descriptor: &StepDescriptor) -> StepStatus {
    match descriptor.kind {
        HandlerKind::Step => StepStatus::Started,
        HandlerKind::Compensation => StepStatus::CompensationStarted,
    }
}

/// One slot of a thread's lane: 64 bytes, one cache line. A step call writes a [`Command::Step`] when it starts
/// and a [`Command::End`] when it ends; trace ids and extras, when a call has them, travel in slots just before its
/// start (the worker attaches them to the next `Step` of the lane). Flush requests and events of threads without a
/// lane travel in the shared queue.
#[repr(align(64))]
pub(crate) enum Command {
    /// A call's start: the call's ids, in the slot (with a [`Command::Detail`] before it, a terminal event).
    Step {
        descriptor: &'static StepDescriptor,
        /// An integer or UUID id is written out as text by the worker.
        saga_id: RawId,
        at: Stamp,
        attempt: i32,
    },
    /// The terminal event of the lane's `call`-th start.
    End {
        call: u64,
        at: Stamp,
        status: StepStatus,
        error: Option<Box<StepError>>,
    },
    /// The trace ids of the next `Step` of the lane.
    Trace(TraceIds),
    /// The order id, metadata and cause of the next `Step` of the lane.
    Extras(Arc<CallExtras>),
    /// The next `Step` of the lane is a terminal event with this detail.
    Detail(Detail),
    /// A whole step event (the shared queue).
    Event(Box<StepEvent>),
    /// A transition given to `Tracker::record`.
    Record(Box<Pending>),
    Flush(SyncSender<()>),
}

/// An event the worker has taken from a lane or the shared queue and holds until it delivers it, in stamp order.
#[derive(Debug)]
pub(crate) enum Taken {
    Step(StepEvent),
    /// The terminal event of the `call`-th start of lane `lane` (the worker pairs it with that start).
    End {
        lane: NonZeroU64,
        call: u64,
        at: Stamp,
        status: StepStatus,
        error: Option<Box<StepError>>,
    },
    Record(Box<Pending>),
}

impl Taken {
    /// When the event was recorded.
    pub(crate) fn stamp(&self) -> Stamp {
        match self {
            Taken::Step(event) => event.at,
            Taken::End { at, .. } => *at,
            Taken::Record(pending) => pending.stamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_slot_is_one_cache_line() {
        // The ring slot is the command; every byte is written by the caller and read by the worker on another core.
        assert_eq!(std::mem::size_of::<Command>(), 64);
    }
}
