//! # saga-tracker
//!
//! Every saga step records itself. Put `#[saga_step(OrderSaga, ReserveStock)]` on a handler and each call emits
//! `STARTED`, then `SUCCEEDED` or `FAILED`, to the Kafka topic `saga.tracker`, Avro-encoded (single-object
//! encoding, schema `schemas/SagaTracker.avsc`), keyed by saga id, with the OpenTelemetry trace id attached.
//!
//! The pieces:
//! - [`SagaEvent`], [`StepStatus`], [`StepError`]: the event model (`event`), and
//! - [`codec`]: Avro encode/decode, byte-exact with the golden vectors — both from `saga-tracker-core`,
//!   re-exported here (tools that only decode depend on that crate alone).
//! - [`Tracker`]: records [`Transition`]s without waiting on the network; [`init`] installs the process default.
//! - [`sink`]: [`KafkaSink`], [`MemorySink`], [`JsonLinesSink`] behind the [`Sink`] trait.
//! - [`spool`]: failed deliveries kept on disk until [`Tracker::replay_spool`] gets them acknowledged.
//! - `outbox` (feature `outbox`): events written in the caller's PostgreSQL transaction, and the relay that
//!   publishes them.
#![warn(missing_docs)]

pub use saga_tracker_core::{bounds, codec, event, schema};
pub mod id;
pub mod otel;
#[cfg(feature = "outbox")]
pub mod outbox;
#[cfg(not(feature = "outbox"))]
mod outbox_off;
mod priority;
pub mod registry;
pub mod saga;
pub mod sink;
pub mod spool;
pub mod stats;
pub mod step;
mod tracker;
mod transition;

#[doc(hidden)]
pub mod testing;

pub use event::{SagaEvent, StepError, StepStatus};
pub use id::Id;
pub use registry::{HandlerKind, ServiceDescriptor, StepDescriptor};
pub use saga::{Saga, SagaContext, StepDecl, StepOutcome};
pub use saga_tracker_macros::{Saga, saga_compensation, saga_service, saga_step};
pub use sink::{JsonLinesSink, KafkaSink, MemorySink, Sink};
pub use stats::TrackerStats;
pub use step::{Cause, Scoped};
pub use tracker::{
    BuildError, FlushError, FlushGuard, InitError, ReplayReport, Tracker, TrackerBuilder,
    WithTracker, current, init, unrecorded_events, with_default, with_default_async,
};
pub use transition::{Declared, RecordError, Transition};

/// What the macros' generated code uses. Not a stable API.
#[doc(hidden)]
pub mod __private {
    /// `outbox = ..`: the transaction parameter and the step in it.
    #[cfg(feature = "outbox")]
    pub use crate::outbox::{OutboxParam, finish_in_tx, outbox_conn, start_in_tx};
    /// `outbox = ..` without feature `outbox`: an error saying to enable it.
    #[cfg(not(feature = "outbox"))]
    pub use crate::outbox_off::{OutboxParam, finish_in_tx, outbox_conn, start_in_tx};
    pub use crate::registry::{
        CompensationHandler, HandlerKey, HandlerKind, HasCompensation, ServiceDescriptor,
        StepDescriptor, StepHandler, WithoutCompensation, compensable, handler_key,
        wired_compensation, wired_key, wired_step, without_compensation,
    };
    pub use crate::saga::{MetadataValue, Saga, StepDecl, error_kind_for, metadata_value};
    pub use crate::step::*;
    pub use inventory;
}
