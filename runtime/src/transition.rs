//! [`Transition`]: what a caller hands to [`Tracker::record`](crate::Tracker::record).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::bounds::{self, Field, TooLarge};
use crate::event::{StepError, StepStatus};

/// One step transition to record. The tracker fills in `eventId`, `idempotencyKey`, `recordedAt`, `service`
/// and the OpenTelemetry ids.
///
/// ```
/// use saga_tracker::{StepError, StepStatus, Transition};
/// let t = Transition::new("OrderSaga", "charge_payment", "saga-42", StepStatus::Failed)
///     .order_id("order-42")
///     .attempt(2)
///     .duration(std::time::Duration::from_millis(12))
///     .error(StepError::new("InsufficientFunds", "balance 10.00 < amount 25.50"))
///     .metadata("tenant", "acme");
/// assert_eq!(t.attempt, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The saga type, e.g. `OrderSaga`.
    pub saga_type: Cow<'static, str>,
    /// The step's wire name, e.g. `reserve_stock`.
    pub step: Cow<'static, str>,
    /// The saga instance id (shared, so a step's start and end events reuse one allocation).
    pub saga_id: Arc<str>,
    /// What happened.
    pub status: StepStatus,
    /// Which attempt (default 1).
    pub attempt: i32,
    /// The business order id.
    pub order_id: Option<Arc<str>>,
    /// How long the handler ran (terminal events).
    pub duration: Option<Duration>,
    /// Why it failed.
    pub error: Option<StepError>,
    /// Opt-in metadata. `traceId`/`spanId` are added by the tracker and win over entries with those keys.
    pub metadata: Vec<(Cow<'static, str>, String)>,
    /// The step's place in its saga (schema v2 `stepIndex`, `stepCount`, `compensable`), when the caller knows it.
    pub declared: Option<Declared>,
    /// On a compensation: the idempotency key of the `FAILED` event it answers (schema v2 `causeIdempotencyKey`).
    pub cause: Option<String>,
}

/// A step's place in its saga's declaration (what `#[derive(Saga)]` knows statically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    /// Position in declaration order, from 0.
    pub step_index: u16,
    /// How many steps the saga declares.
    pub step_count: u16,
    /// Whether the step has a compensation.
    pub compensable: bool,
}

impl Transition {
    /// A transition with attempt 1 and nothing optional set.
    pub fn new(
        saga_type: impl Into<Cow<'static, str>>,
        step: impl Into<Cow<'static, str>>,
        saga_id: impl Into<Arc<str>>,
        status: StepStatus,
    ) -> Self {
        Transition {
            saga_type: saga_type.into(),
            step: step.into(),
            saga_id: saga_id.into(),
            status,
            attempt: 1,
            order_id: None,
            duration: None,
            error: None,
            metadata: Vec::new(),
            declared: None,
            cause: None,
        }
    }

    /// Sets the step's place in its saga: position (from 0), step count, compensable.
    pub fn declared(mut self, step_index: u16, step_count: u16, compensable: bool) -> Self {
        self.declared = Some(Declared {
            step_index,
            step_count,
            compensable,
        });
        self
    }

    /// On a compensation: the failure it answers, as that `FAILED` event's idempotency key
    /// (`{sagaId}:{step}:FAILED:{attempt}`, see [`SagaEvent::idempotency_key_for`](crate::SagaEvent::idempotency_key_for)).
    pub fn caused_by(mut self, failure_idempotency_key: impl Into<String>) -> Self {
        self.cause = Some(failure_idempotency_key.into());
        self
    }

    /// Sets the attempt number.
    pub fn attempt(mut self, attempt: i32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets the order id.
    pub fn order_id(mut self, order_id: impl Into<Arc<str>>) -> Self {
        self.order_id = Some(order_id.into());
        self
    }

    /// Sets the handler's duration.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Sets the error.
    pub fn error(mut self, error: StepError) -> Self {
        self.error = Some(error);
        self
    }

    /// Adds one metadata entry.
    pub fn metadata(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }
}

impl Transition {
    /// Checks the ids and names against their bounds (free text is cut later, by the worker).
    pub(crate) fn check_bounds(&self) -> Result<(), TooLarge> {
        bounds::check_len(Field::SagaId, self.saga_id.len())?;
        bounds::check_len(Field::SagaType, self.saga_type.len())?;
        bounds::check_len(Field::Step, self.step.len())?;
        match &self.order_id {
            Some(order) => bounds::check_len(Field::OrderId, order.len()),
            None => Ok(()),
        }
    }
}

/// A transition the caller cannot record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The saga id is empty.
    #[error("cannot record {saga_type}.{step}: the saga id is empty")]
    EmptySagaId {
        /// The saga type.
        saga_type: String,
        /// The step.
        step: String,
    },
    /// The saga type or step name is empty.
    #[error("cannot record a transition with an empty saga type or step name")]
    EmptyName,
    /// An id or name is over its bound ([`bounds`](crate::bounds)); the transition is not recorded.
    #[error("cannot record the transition: {0}")]
    TooLarge(#[from] TooLarge),
    /// No tracker is installed (see [`init`](crate::init)) and none is in scope.
    #[error("no saga tracker installed: call saga_tracker::init(tracker) at start-up")]
    NoTracker,
}
