//! Without feature `outbox`: what `#[saga_step(.., outbox = tx)]` generates calls to resolves to these items,
//! whose only effect is an error at the attribute saying to enable the feature.

use std::any::Any;
use std::panic::resume_unwind;

use crate::registry::StepDescriptor;
use crate::step::StepIds;

/// Stands for the transaction's connection when the feature is off.
#[derive(Debug)]
pub struct OutboxFeatureOff;

/// Never implemented: `outbox = ..` needs feature `outbox`.
#[diagnostic::on_unimplemented(
    message = "`outbox = ..` needs the `outbox` feature of saga-tracker",
    label = "the step's events would be written into this transaction by the `outbox` feature",
    note = "enable it in Cargo.toml: `saga-tracker = {{ version = \"..\", features = [\"outbox\"] }}`"
)]
pub trait OutboxParam {}

/// The feature is off: an error at the user's token (see [`OutboxParam`]).
pub fn outbox_conn<P: OutboxParam>(_param: &mut P) -> OutboxFeatureOff {
    OutboxFeatureOff
}

/// The feature is off: nothing is started.
pub async fn start_in_tx(
    _conn: OutboxFeatureOff,
    _descriptor: &'static StepDescriptor,
    _ids: StepIds,
) -> Option<()> {
    None
}

/// The feature is off: the outcome as it is.
pub async fn finish_in_tx<R, D>(
    _step: Option<()>,
    _conn: OutboxFeatureOff,
    _describe: D,
    result: Result<R, Box<dyn Any + Send>>,
) -> R {
    match result {
        Ok(outcome) => outcome,
        Err(payload) => resume_unwind(payload),
    }
}
