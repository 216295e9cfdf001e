//! What callers put on the worker's queue. A step guard's events travel as compact [`StepRecord`]s (about two
//! cache lines, no allocation for ids up to [`Id::INLINE`](crate::Id::INLINE) bytes); transitions given to
//! [`Tracker::record`](crate::Tracker::record) travel boxed.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::SystemTime;

use super::clock::Stamp;
use crate::event::{StepError, StepStatus};
use crate::id::Id;
use crate::otel::TraceIds;
use crate::registry::StepDescriptor;
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

/// One event of a step guard. The worker derives everything else: eventId, recordedAt in µs (from the stamp),
/// the duration, saga type and step from the descriptor.
#[derive(Debug)]
pub(crate) struct StepRecord {
    pub descriptor: &'static StepDescriptor,
    pub saga_id: Id,
    pub extras: Option<Arc<CallExtras>>,
    /// When the event happened: one counter read on the caller's thread.
    pub at: Stamp,
    /// When the call started (the start event's stamp; the same as `at` for a start event).
    pub started: Stamp,
    pub trace: Option<TraceIds>,
    pub error: Option<Box<StepError>>,
    pub attempt: i32,
    pub status: StepStatus,
}

impl Command {
    /// When the event was recorded (a flush carries no event: zero).
    pub(crate) fn stamp(&self) -> Stamp {
        match self {
            Command::Step(record) => record.at,
            Command::Record(pending) => pending.stamp,
            Command::Flush(_) => Stamp::ZERO,
        }
    }
}

pub(crate) enum Command {
    Step(StepRecord),
    Record(Box<Pending>),
    Flush(SyncSender<()>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_event_fits_in_two_cache_lines_with_its_queue_stamp() {
        // The ring slot is the command; every byte is written by the caller and read by the worker on another core.
        assert!(
            std::mem::size_of::<Command>() <= 128,
            "{}",
            std::mem::size_of::<Command>()
        );
    }
}
