//! The event model: one recorded transition of one saga step (`saga.tracker.SagaTrackerEvent`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The metadata key holding the OpenTelemetry trace id (32 lowercase hex digits).
pub const TRACE_ID_KEY: &str = "traceId";
/// The metadata key holding the OpenTelemetry span id (16 lowercase hex digits).
pub const SPAN_ID_KEY: &str = "spanId";

/// The status of a step transition (Avro enum `saga.tracker.StepStatus`).
///
/// The declaration order is the Avro symbol order: the index is what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    /// The step's handler was entered.
    Started,
    /// The step's handler returned `Ok`.
    Succeeded,
    /// The step's handler returned `Err`, panicked, or was cancelled.
    Failed,
    /// A compensation handler was entered.
    CompensationStarted,
    /// A compensation handler returned `Ok`.
    Compensated,
    /// A compensation handler returned `Err`, panicked, or was cancelled.
    CompensationFailed,
    /// The schema's default symbol: a status written by a newer schema this reader does not know.
    Unknown,
}

impl StepStatus {
    /// Every status, in Avro symbol order.
    pub const ALL: [StepStatus; 7] = [
        StepStatus::Started,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::CompensationStarted,
        StepStatus::Compensated,
        StepStatus::CompensationFailed,
        StepStatus::Unknown,
    ];

    /// The Avro symbol, e.g. `"COMPENSATION_STARTED"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            StepStatus::Started => "STARTED",
            StepStatus::Succeeded => "SUCCEEDED",
            StepStatus::Failed => "FAILED",
            StepStatus::CompensationStarted => "COMPENSATION_STARTED",
            StepStatus::Compensated => "COMPENSATED",
            StepStatus::CompensationFailed => "COMPENSATION_FAILED",
            StepStatus::Unknown => "UNKNOWN",
        }
    }

    /// The index of the symbol in the Avro enum.
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// The status for an Avro enum index, if the index is in range.
    pub fn from_index(index: u32) -> Option<StepStatus> {
        Self::ALL.get(index as usize).copied()
    }

    /// True for the statuses that end a handler call (everything but the two `*_STARTED`).
    pub const fn is_terminal(self) -> bool {
        !matches!(
            self,
            StepStatus::Started | StepStatus::CompensationStarted | StepStatus::Unknown
        )
    }

    /// True for the three compensation statuses.
    pub const fn is_compensation(self) -> bool {
        matches!(
            self,
            StepStatus::CompensationStarted
                | StepStatus::Compensated
                | StepStatus::CompensationFailed
        )
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned by [`StepStatus::from_str`] for a string that is not a status symbol.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown step status `{0}`; expected one of STARTED, SUCCEEDED, FAILED, COMPENSATION_STARTED, COMPENSATED, COMPENSATION_FAILED, UNKNOWN"
)]
pub struct UnknownStatus(pub String);

impl FromStr for StepStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Why a step failed (Avro record `saga.tracker.StepError`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepError {
    /// A short classifier: the error type's name, `panic`, `cancelled`, or a user-supplied kind.
    pub kind: String,
    /// The error's `Display` text.
    pub message: String,
}

impl StepError {
    /// A step error from a kind and a message.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        StepError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// One recorded transition of one saga step: the Rust form of `saga.tracker.SagaTrackerEvent` v1.
///
/// Field order and names follow `schemas/SagaTracker.avsc`; the serde form uses the Avro field names, so
/// `serde_json::to_string(&event)` prints the same JSON a schema-aware tool would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaEvent {
    /// Unique id of this event (UUIDv7 when recorded by this crate).
    #[serde(serialize_with = "uuid_as_string")]
    pub event_id: Uuid,
    /// `{sagaId}:{step}:{status}:{attempt}`: the same transition recorded twice has the same key.
    pub idempotency_key: String,
    /// The saga instance.
    pub saga_id: String,
    /// The saga type, e.g. `OrderSaga`.
    pub saga_type: String,
    /// The step's wire name, e.g. `reserve_stock`.
    pub step: String,
    /// What happened.
    pub status: StepStatus,
    /// Which attempt of the step (1 for the first).
    pub attempt: i32,
    /// The business order id, when the saga has one.
    pub order_id: Option<String>,
    /// The service that recorded the event.
    pub service: String,
    /// When the transition happened, in microseconds since the Unix epoch (UTC).
    pub recorded_at: i64,
    /// How long the handler ran, on terminal events.
    pub duration_micros: Option<i64>,
    /// Why the step failed, on `FAILED` and `COMPENSATION_FAILED`.
    pub error: Option<StepError>,
    /// Free-form string metadata: `traceId`, `spanId` and any opt-in values.
    pub metadata: BTreeMap<String, String>,
}

impl SagaEvent {
    /// The idempotency key for a transition: `{sagaId}:{step}:{status}:{attempt}`.
    pub fn idempotency_key_for(
        saga_id: &str,
        step: &str,
        status: StepStatus,
        attempt: i32,
    ) -> String {
        format!("{saga_id}:{step}:{}:{attempt}", status.as_str())
    }

    /// `recorded_at` as a [`SystemTime`].
    pub fn recorded_at_time(&self) -> SystemTime {
        micros_to_system_time(self.recorded_at)
    }

    /// The OpenTelemetry trace id recorded in `metadata["traceId"]`, if any.
    pub fn trace_id(&self) -> Option<&str> {
        self.metadata.get(TRACE_ID_KEY).map(String::as_str)
    }
}

/// The Avro `uuid` logical type is a string: serialize the hyphenated form for every serde format.
fn uuid_as_string<S: serde::Serializer>(id: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&id.hyphenated())
}

/// Microseconds since the Unix epoch for a [`SystemTime`] (negative before 1970; saturating).
pub fn system_time_to_micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros())
            .map(|v| -v)
            .unwrap_or(i64::MIN),
    }
}

/// The [`SystemTime`] for microseconds since the Unix epoch.
pub fn micros_to_system_time(micros: i64) -> SystemTime {
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}
