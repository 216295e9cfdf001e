//! Rows as the API serves them: stored events, saga summaries and the saga state.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use saga_tracker_core::StepStatus;
use serde::{Deserialize, Serialize};
use sqlx::Postgres;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use utoipa::ToSchema;
use uuid::Uuid;

macro_rules! saga_states {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal, terminal: $terminal:literal; )*) => {
        /// The derived state of one saga. Declared by one table (`saga_states!` in `db/model.rs`): each state's
        /// wire name and whether it is terminal, so a new state is one line.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema, async_graphql::Enum)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum SagaState {
            $( $(#[$doc])* $variant, )*
        }

        impl SagaState {
            /// Every state, in declaration order.
            pub const ALL: [SagaState; [$($wire),*].len()] = [$(SagaState::$variant),*];

            /// The wire name, e.g. `COMPENSATION_FAILED`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( SagaState::$variant => $wire, )*
                }
            }

            /// True for the states in which the saga is expected to stay quiet (no step or compensation in
            /// flight). The one source of truth for "terminal": the stuck-saga query binds [`SagaState::terminal`].
            pub const fn is_terminal(self) -> bool {
                match self {
                    $( SagaState::$variant => $terminal, )*
                }
            }
        }
    };
}

saga_states! {
    /// A step is in flight, or nothing terminal has been seen yet.
    Running = "RUNNING", terminal: false;
    /// v1-only sagas (best effort): every step recorded so far succeeded (the last attempt of each).
    Succeeded = "SUCCEEDED", terminal: true;
    /// Schema v2: the saga's last declared step succeeded and nothing failed.
    Completed = "COMPLETED", terminal: true;
    /// A step's last attempt failed and nothing needs compensation (v2: no succeeded compensable step before it;
    /// v1: no compensation recorded). Terminal: a failure that owes compensations is `COMPENSATING` (v2).
    Failed = "FAILED", terminal: true;
    /// At least one compensation has started and not finished.
    Compensating = "COMPENSATING", terminal: false;
    /// Every compensation recorded so far finished successfully.
    Compensated = "COMPENSATED", terminal: true;
    /// A compensation's last attempt failed: the saga needs a human.
    CompensationFailed = "COMPENSATION_FAILED", terminal: true;
}

impl SagaState {
    /// The terminal states.
    pub fn terminal() -> impl Iterator<Item = SagaState> {
        Self::ALL.into_iter().filter(|s| s.is_terminal())
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a saga state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown saga status `{}`; expected one of {}", .0.escape_debug(), SagaState::ALL.map(SagaState::as_str).join(", "))]
pub struct UnknownState(pub String);

impl FromStr for SagaState {
    type Err = UnknownState;
    /// Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Case-insensitive, like [`FromStr`] (`?status=failed` works).
impl<'de> Deserialize<'de> for SagaState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Stored as `text`: decoding checks the name.
impl sqlx::Type<Postgres> for SagaState {
    fn type_info() -> PgTypeInfo {
        <String as sqlx::Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for SagaState {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(<&str as sqlx::Decode<Postgres>>::decode(value)?.parse()?)
    }
}

impl sqlx::Encode<'_, Postgres> for SagaState {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as sqlx::Encode<Postgres>>::encode(self.as_str(), buf)
    }
}

/// A step status as stored (`text`); an unknown name reads as [`StepStatus::Unknown`].
#[derive(Debug, Clone, sqlx::Type)]
#[sqlx(transparent)]
pub struct StoredStepStatus(pub String);

impl From<StoredStepStatus> for StepStatus {
    fn from(s: StoredStepStatus) -> Self {
        StepStatus::from_str(&s.0).unwrap_or(StepStatus::Unknown)
    }
}

/// The OpenAPI schema of [`StepStatus`] (a type of the core crate): its symbols.
pub fn step_status_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(StepStatus::ALL.map(StepStatus::as_str)))
        .description(Some(
            "The step status symbol (Avro enum `saga.tracker.StepStatus`).",
        ))
        .build()
}

/// One stored event (a row of `saga_events`), as the API serves it; in GraphQL, the fields of `TimelineEvent`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    sqlx::FromRow,
    ToSchema,
    async_graphql::SimpleObject,
)]
#[graphql(name = "Event", complex)]
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
    #[sqlx(try_from = "StoredStepStatus")]
    #[schema(schema_with = step_status_schema)]
    #[graphql(skip)]
    pub status: StepStatus,
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
    #[schema(value_type = HashMap<String, String>)]
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

/// The derived summary of one saga (a row of `sagas`), as the API serves it; GraphQL type `Saga`, with its
/// `events` and `links`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    sqlx::FromRow,
    ToSchema,
    async_graphql::SimpleObject,
)]
#[graphql(name = "Saga", complex)]
pub struct SagaRow {
    /// The saga instance.
    pub saga_id: String,
    /// The saga type.
    pub saga_type: String,
    /// The derived state.
    pub status: SagaState,
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
    /// True when events of the saga were loaded back from cold storage (`restore`).
    pub restored: bool,
}
