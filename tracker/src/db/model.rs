//! Rows as the API serves them: stored events, saga summaries and the saga state.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The derived state of one saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaState {
    /// A step is in flight, or nothing terminal has been seen yet.
    Running,
    /// v1-only sagas (best effort): every step recorded so far succeeded (the last attempt of each).
    Succeeded,
    /// Schema v2: the saga's last declared step succeeded and nothing failed.
    Completed,
    /// A step's last attempt failed and nothing needs compensation (v2: no succeeded compensable step before it;
    /// v1: no compensation recorded).
    Failed,
    /// At least one compensation has started and not finished.
    Compensating,
    /// Every compensation recorded so far finished successfully.
    Compensated,
    /// A compensation's last attempt failed: the saga needs a human.
    CompensationFailed,
}

impl SagaState {
    /// Every state, in declaration order.
    pub const ALL: [SagaState; 7] = [
        SagaState::Running,
        SagaState::Succeeded,
        SagaState::Completed,
        SagaState::Failed,
        SagaState::Compensating,
        SagaState::Compensated,
        SagaState::CompensationFailed,
    ];

    /// The wire name, e.g. `COMPENSATION_FAILED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "RUNNING",
            SagaState::Succeeded => "SUCCEEDED",
            SagaState::Completed => "COMPLETED",
            SagaState::Failed => "FAILED",
            SagaState::Compensating => "COMPENSATING",
            SagaState::Compensated => "COMPENSATED",
            SagaState::CompensationFailed => "COMPENSATION_FAILED",
        }
    }

    /// True for the states in which the saga is expected to stay quiet: a saga that is not terminal and silent
    /// for `--stuck-after-minutes` is stuck. `FAILED` is terminal because a failure that owes compensations is
    /// `COMPENSATING` (v2) until they are recorded.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            SagaState::Succeeded
                | SagaState::Completed
                | SagaState::Failed
                | SagaState::Compensated
                | SagaState::CompensationFailed
        )
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a saga state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown saga status `{0}`; expected one of RUNNING, SUCCEEDED, COMPLETED, FAILED, COMPENSATING, COMPENSATED, COMPENSATION_FAILED"
)]
pub struct UnknownState(pub String);

impl FromStr for SagaState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// One stored event (a row of `saga_events`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct EventRow {
    /// The event's unique id.
    pub event_id: Uuid,
    /// `{sagaId}:{step}:{status}:{attempt}`.
    pub idempotency_key: String,
    /// The saga instance.
    pub saga_id: String,
    /// The saga type.
    pub saga_type: String,
    /// The step's wire name.
    pub step: String,
    /// The step status symbol, e.g. `FAILED`.
    pub status: String,
    /// Which attempt of the step.
    pub attempt: i32,
    /// The business order id.
    pub order_id: Option<String>,
    /// The service that recorded the event.
    pub service: String,
    /// When the transition happened (producer clock).
    pub recorded_at: DateTime<Utc>,
    /// How long the handler ran.
    pub duration_micros: Option<i64>,
    /// The error kind, on failures.
    pub error_kind: Option<String>,
    /// The error message, on failures.
    pub error_message: Option<String>,
    /// `traceId`, `spanId` and opt-in metadata.
    pub metadata: serde_json::Value,
    /// The topic the event was read from.
    pub kafka_topic: String,
    /// Its partition.
    pub kafka_partition: i32,
    /// Its offset.
    pub kafka_offset: i64,
    /// When the tracker stored it.
    pub ingested_at: DateTime<Utc>,
    /// Schema v2: the step's position in its saga's declaration, from 0 (null for v1 events).
    pub step_index: Option<i32>,
    /// Schema v2: how many steps the saga declares (null for v1 events).
    pub step_count: Option<i32>,
    /// Schema v2: whether the step declares a compensation (null for v1 events).
    pub compensable: Option<bool>,
    /// Schema v2, on compensation events: the idempotency key of the failure that triggered it.
    pub cause_idempotency_key: Option<String>,
}

/// The derived summary of one saga (a row of `sagas`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct SagaRow {
    /// The saga instance.
    pub saga_id: String,
    /// The saga type.
    pub saga_type: String,
    /// The derived state (a [`SagaState`] name).
    pub status: String,
    /// The business order id.
    pub order_id: Option<String>,
    /// The earliest event's time.
    pub started_at: DateTime<Utc>,
    /// The latest event's time.
    pub updated_at: DateTime<Utc>,
    /// The step whose failure made the saga fail, if any.
    pub failed_step: Option<String>,
    /// Steps whose compensation started and has not finished.
    pub pending_compensations: Vec<String>,
    /// Every step seen.
    pub steps: Vec<String>,
    /// Every service that recorded an event.
    pub services: Vec<String>,
    /// How many events the saga has.
    pub event_count: i32,
    /// When the tracker last stored an event of the saga.
    pub last_ingested_at: DateTime<Utc>,
}
