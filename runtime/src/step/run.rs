//! Running a step body under its [`StepGuard`]: sync bodies, and the pieces the generated code uses for async ones.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::FutureExt as _;
use futures::future::CatchUnwind;

use super::{DefaultKind, Describe, StepGuard};
use crate::saga::StepOutcome;

/// Runs a sync step body: records the outcome, or the panic (then resumes it).
#[inline]
pub fn run_sync<R: StepOutcome, F: FnOnce() -> R>(guard: StepGuard, body: F) -> R {
    run_sync_with::<R, DefaultKind, F>(guard, DefaultKind, body)
}

/// [`run_sync`] with a classifier.
#[inline(always)]
pub fn run_sync_with<R, D: Describe<R>, F: FnOnce() -> R>(
    mut guard: StepGuard,
    describe: D,
    body: F,
) -> R {
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
