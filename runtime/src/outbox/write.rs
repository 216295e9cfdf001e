//! Recording into the caller's transaction: [`StepInTx`] (a step guard whose start and success events are rows
//! of the caller's transaction) and [`record_in_tx`] (one transition).

use std::any::Any;
use std::panic::resume_unwind;
use std::time::SystemTime;

use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::event::{StepError, StepStatus};
use crate::otel::TraceIds;
use crate::registry::{HandlerKind, StepDescriptor};
use crate::saga::StepOutcome;
use crate::step::{CANCELLED_KIND, DefaultKind, Describe, PANIC_KIND, StepIds, panic_message};
use crate::tracker::Tracker;
use crate::transition::{RecordError, Transition};

/// The error kind of the FAILED event recorded when the outbox row itself could not be written.
pub const OUTBOX_ERROR_KIND: &str = "outbox";

/// Why an event could not be written to the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The transition is not recordable (empty saga id or name), or no tracker is installed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// [`StepInTx::start`] was given a transition that is not a start (STARTED or COMPENSATION_STARTED).
    #[error("a step in a transaction starts with STARTED or COMPENSATION_STARTED, not {0}")]
    NotAStart(StepStatus),
    /// The insert failed. The transaction is aborted: roll it back (its step's FAILED was recorded directly).
    #[error("writing saga event {event_id} to saga_tracker_outbox failed: {source}")]
    Write {
        /// The event that was not written.
        event_id: Uuid,
        /// The database error.
        source: sqlx::Error,
    },
}

/// Writes one transition into `conn` (normally `&mut *tx` of the caller's transaction) as a row of
/// `saga_tracker_outbox`, encoded by the current tracker (service name, framing) exactly as its sink would
/// send it. Returns the event id. The row commits or rolls back with the transaction.
///
/// A failure the transaction will roll back must not be written here: record it with
/// [`Tracker::record`](crate::Tracker::record) (or let [`StepInTx`] do it).
pub async fn record_in_tx(
    conn: &mut PgConnection,
    transition: Transition,
) -> Result<Uuid, OutboxError> {
    let tracker = crate::current().ok_or(RecordError::NoTracker)?;
    record_in_tx_with(
        &tracker,
        conn,
        &transition,
        SystemTime::now(),
        TraceIds::current(),
    )
    .await
}

/// [`record_in_tx`] with the tracker, the event's time and its trace ids given.
pub async fn record_in_tx_with(
    tracker: &Tracker,
    conn: &mut PgConnection,
    transition: &Transition,
    at: SystemTime,
    trace: Option<TraceIds>,
) -> Result<Uuid, OutboxError> {
    let encoded = tracker.encode_owned(transition, at, trace.as_ref())?;
    let headers = match &encoded.traceparent {
        Some(tp) => serde_json::json!({ "traceparent": tp }),
        None => serde_json::json!({}),
    };
    sqlx::query(
        "INSERT INTO saga_tracker_outbox (event_id, saga_id, payload, headers) VALUES ($1, $2, $3, $4)",
    )
    .bind(encoded.event_id)
    .bind(&*transition.saga_id)
    .bind(&encoded.payload)
    .bind(Json(headers))
    .execute(conn)
    .await
    .map_err(|source| OutboxError::Write {
        event_id: encoded.event_id,
        source,
    })?;
    Ok(encoded.event_id)
}

/// One handler call recorded through the caller's transaction: STARTED (COMPENSATION_STARTED) is written into
/// it by [`start`](StepInTx::start), SUCCEEDED (COMPENSATED) by [`finish`](StepInTx::finish) on success. A
/// failure — an `Err` outcome, a panic, the guard dropped unfinished (cancelled), or the outbox write failing —
/// is recorded through the tracker directly, outside the transaction, which the caller rolls back.
///
/// Both events carry the trace ids of the span the step started in, like [`StepGuard`](crate::step::StepGuard).
#[derive(Debug)]
#[must_use = "a step records its terminal event when finished or dropped"]
pub struct StepInTx {
    /// The start transition; terminal events reuse its names and ids.
    transition: Transition,
    kind: HandlerKind,
    tracker: Tracker,
    started: SystemTime,
    trace: Option<TraceIds>,
    finished: bool,
}

impl StepInTx {
    /// Writes `start` (status STARTED or COMPENSATION_STARTED) into `conn`, the caller's transaction, through the
    /// current tracker. If the write fails, a FAILED (COMPENSATION_FAILED) of kind [`OUTBOX_ERROR_KIND`] is
    /// recorded directly and the error returned: the transaction is aborted, roll it back.
    pub async fn start(
        conn: &mut PgConnection,
        start: Transition,
    ) -> Result<StepInTx, OutboxError> {
        let tracker = crate::current().ok_or(RecordError::NoTracker)?;
        StepInTx::start_with(&tracker, conn, start).await
    }

    /// [`start`](StepInTx::start) with the tracker given.
    pub async fn start_with(
        tracker: &Tracker,
        conn: &mut PgConnection,
        start: Transition,
    ) -> Result<StepInTx, OutboxError> {
        let kind = match start.status {
            StepStatus::Started => HandlerKind::Step,
            StepStatus::CompensationStarted => HandlerKind::Compensation,
            other => return Err(OutboxError::NotAStart(other)),
        };
        let mut step = StepInTx {
            transition: start,
            kind,
            tracker: tracker.clone(),
            started: SystemTime::now(),
            trace: TraceIds::current(),
            finished: false,
        };
        let written = record_in_tx_with(
            &step.tracker,
            conn,
            &step.transition,
            step.started,
            step.trace,
        )
        .await;
        match written {
            Ok(_) => Ok(step),
            Err(err @ OutboxError::Record(_)) => {
                // Nothing recordable: no terminal event either.
                step.finished = true;
                Err(err)
            }
            Err(err) => {
                step.fail_directly(StepError::new(OUTBOX_ERROR_KIND, err.to_string()));
                Err(err)
            }
        }
    }

    /// The step of `descriptor` with the ids a `#[saga_step]`'s generated code computed.
    pub async fn start_step(
        conn: &mut PgConnection,
        descriptor: &'static StepDescriptor,
        ids: StepIds,
    ) -> Result<StepInTx, OutboxError> {
        let status = match descriptor.kind {
            HandlerKind::Step => StepStatus::Started,
            HandlerKind::Compensation => StepStatus::CompensationStarted,
        };
        let mut transition = Transition::new(
            descriptor.saga_type,
            descriptor.step,
            ids.saga_id.to_id().as_str(),
            status,
        )
        .attempt(ids.attempt);
        if let Some(order_id) = &ids.order_id {
            transition = transition.order_id(order_id.as_str());
        }
        transition.metadata = ids.metadata;
        StepInTx::start(conn, transition).await
    }

    /// Records the terminal event for `outcome`: on success into `conn` (the same transaction as the start), on
    /// failure through the tracker directly. An `Err` return means the success event could not be written: the
    /// transaction is aborted (roll it back) and a FAILED of kind [`OUTBOX_ERROR_KIND`] was recorded directly.
    pub async fn finish<R: StepOutcome>(
        self,
        conn: &mut PgConnection,
        outcome: &R,
    ) -> Result<(), OutboxError> {
        self.finish_with(conn, outcome, DefaultKind).await
    }

    /// [`finish`](StepInTx::finish) with a classifier for the failure's kind.
    pub async fn finish_with<R, D: Describe<R>>(
        mut self,
        conn: &mut PgConnection,
        outcome: &R,
        describe: D,
    ) -> Result<(), OutboxError> {
        if let Some(error) = describe.describe(outcome) {
            self.fail_directly(error);
            return Ok(());
        }
        let now = SystemTime::now();
        let status = match self.kind {
            HandlerKind::Step => StepStatus::Succeeded,
            HandlerKind::Compensation => StepStatus::Compensated,
        };
        let mut end = self.transition.clone();
        end.status = status;
        end.duration = Some(now.duration_since(self.started).unwrap_or_default());
        // Dropped while writing (cancelled): `finished` is still false and Drop records the failure.
        let written = record_in_tx_with(&self.tracker, conn, &end, now, self.trace).await;
        match written {
            Ok(_) => {
                self.finished = true;
                Ok(())
            }
            Err(err) => {
                self.fail_directly(StepError::new(OUTBOX_ERROR_KIND, err.to_string()));
                Err(err)
            }
        }
    }

    /// Records a failure of kind `panic` with the panic's message, then resumes the panic unchanged.
    pub fn panicked(mut self, payload: Box<dyn Any + Send>) -> ! {
        self.fail_directly(StepError::new(PANIC_KIND, panic_message(payload.as_ref())));
        drop(self);
        resume_unwind(payload)
    }

    /// The saga id.
    pub fn saga_id(&self) -> &str {
        &self.transition.saga_id
    }

    /// Records FAILED (COMPENSATION_FAILED) through the tracker, outside any transaction, once.
    fn fail_directly(&mut self, error: StepError) {
        if self.finished {
            return;
        }
        self.finished = true;
        let now = SystemTime::now();
        let mut end = self.transition.clone();
        end.status = match self.kind {
            HandlerKind::Step => StepStatus::Failed,
            HandlerKind::Compensation => StepStatus::CompensationFailed,
        };
        end.duration = Some(now.duration_since(self.started).unwrap_or_default());
        end.error = Some(error);
        if let Err(err) = self.tracker.record_traced(end, now, self.trace) {
            tracing::error!(%err, saga_id = %self.transition.saga_id, step = %self.transition.step,
                "saga-tracker: the failure of a step in a transaction could not be recorded");
        }
    }
}

impl Drop for StepInTx {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let error = if std::thread::panicking() {
            StepError::new(PANIC_KIND, "the step panicked")
        } else {
            StepError::new(
                CANCELLED_KIND,
                "the step ended without finishing its outbox record (dropped, or its future was cancelled)",
            )
        };
        self.fail_directly(error);
    }
}
