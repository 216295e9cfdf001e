//! What `#[saga_step(.., outbox = tx)]` and `#[saga_compensation(.., outbox = tx)]` generate calls to: the check
//! of the transaction parameter, and a [`StepInTx`] started before the handler's body and finished after it.

use std::any::Any;
use std::panic::resume_unwind;

use sqlx::{PgConnection, Postgres, Transaction};

use super::write::{OutboxError, StepInTx};
use crate::registry::StepDescriptor;
use crate::step::{Describe, StepIds};
use crate::transition::RecordError;

/// The parameter named by `outbox = ..`: a transaction (or connection) the step's STARTED and SUCCEEDED rows are
/// written into.
#[diagnostic::on_unimplemented(
    message = "`outbox = ..` names a parameter of type `{Self}`, which is not a PostgreSQL transaction",
    label = "this parameter must be `&mut sqlx::Transaction<'_, Postgres>` or `&mut sqlx::PgConnection`",
    note = "declare it as `tx: &mut sqlx::Transaction<'_, sqlx::Postgres>` (or `conn: &mut sqlx::PgConnection`) and name it in the attribute: `outbox = tx`"
)]
pub trait OutboxParam {
    /// The connection of the transaction.
    fn outbox_conn(&mut self) -> &mut PgConnection;
}

impl OutboxParam for &mut Transaction<'_, Postgres> {
    fn outbox_conn(&mut self) -> &mut PgConnection {
        self
    }
}

impl OutboxParam for &mut PgConnection {
    fn outbox_conn(&mut self) -> &mut PgConnection {
        self
    }
}

/// The connection behind the `outbox = ..` parameter (the generated code passes `&mut tx`).
pub fn outbox_conn<P: OutboxParam>(param: &mut P) -> &mut PgConnection {
    param.outbox_conn()
}

/// Writes the start of the step into the caller's transaction. `None` when nothing could be written: no tracker
/// is installed (as with a direct step, nothing is recorded), or the write failed (then the step's FAILED was
/// recorded directly and the transaction is aborted: the handler's own statements fail and it rolls back).
pub async fn start_in_tx(
    conn: &mut PgConnection,
    descriptor: &'static StepDescriptor,
    ids: StepIds,
) -> Option<StepInTx> {
    match StepInTx::start_step(conn, descriptor, ids).await {
        Ok(step) => Some(step),
        Err(OutboxError::Record(RecordError::NoTracker)) => None,
        Err(err) => {
            tracing::warn!(%err, step = %descriptor, "saga-tracker: the start of a step in a transaction was not written");
            None
        }
    }
}

/// Finishes the step with the handler's outcome: SUCCEEDED into the transaction, or FAILED (an `Err`, a panic)
/// through the tracker, outside it; a panic is resumed after it is recorded.
pub async fn finish_in_tx<R, D: Describe<R>>(
    step: Option<StepInTx>,
    conn: &mut PgConnection,
    describe: D,
    result: Result<R, Box<dyn Any + Send>>,
) -> R {
    match (result, step) {
        (Ok(outcome), Some(step)) => {
            if let Err(err) = step.finish_with(conn, &outcome, describe).await {
                tracing::warn!(%err, "saga-tracker: the end of a step in a transaction was not written; its FAILED was recorded directly");
            }
            outcome
        }
        (Ok(outcome), None) => outcome,
        (Err(payload), Some(step)) => step.panicked(payload),
        (Err(payload), None) => resume_unwind(payload),
    }
}
