//! Running a step body under its [`StepGuard`]: sync bodies, and the pieces the generated code uses for async ones.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::FutureExt as _;
use futures::future::CatchUnwind;

use super::{DefaultKind, Describe, StepGuard, StepIds};
use crate::registry::StepDescriptor;
use crate::saga::StepOutcome;

/// Runs a sync step body under a [`StepGuard`] of `descriptor` and `ids`: records the start, then the outcome, or
/// the panic (then resumes it).
#[inline]
pub fn run_sync<R: StepOutcome, F: FnOnce() -> R>(
    descriptor: &'static StepDescriptor,
    ids: StepIds,
    body: F,
) -> R {
    run_sync_with::<R, DefaultKind, F>(descriptor, ids, DefaultKind, body)
}

/// [`run_sync`] with a classifier. The guard lives here from start to end (the generated code does not move it).
#[inline(always)]
pub fn run_sync_with<R, D: Describe<R>, F: FnOnce() -> R>(
    descriptor: &'static StepDescriptor,
    ids: StepIds,
    describe: D,
    body: F,
) -> R {
    let mut guard = StepGuard::unstarted(descriptor, ids);
    guard.record_start();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(outcome) => {
            guard.finish_in_place(&outcome, describe);
            outcome
        }
        Err(payload) => guard.panicked(payload),
    }
}

/// Wraps an async step body so a panic while polling it is caught (then recorded and resumed by the caller).
/// Naming the output type `R` lets `?` in the body infer its error conversion.
#[inline]
pub fn catch_body<R, F: Future<Output = R>>(body: F) -> CatchUnwind<AssertUnwindSafe<F>> {
    AssertUnwindSafe(body).catch_unwind()
}

/// Finishes an async step: records the outcome, or the panic (then resumes it).
#[inline]
pub fn finish_async<R, D: Describe<R>>(
    mut guard: StepGuard,
    describe: D,
    result: Result<R, Box<dyn Any + Send>>,
) -> R {
    match result {
        Ok(outcome) => {
            guard.finish_in_place(&outcome, describe);
            outcome
        }
        Err(payload) => guard.panicked(payload),
    }
}
