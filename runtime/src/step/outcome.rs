//! How a step's outcome becomes its terminal event: success, or a failure with a kind and a message.

use std::any::Any;
use std::fmt::Display;

use crate::event::StepError;
use crate::saga::StepOutcome;

/// The text of a panic payload (`&str` or `String`), else a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}

/// Describes a step's outcome: `None` on success, else the recorded error (kind and message).
/// Implemented by [`DefaultKind`] and [`ClassifyWith`] for every [`StepOutcome`].
#[diagnostic::on_unimplemented(
    message = "a #[saga_step] fn returning `{R}` cannot report failure",
    label = "this return type cannot report failure",
    note = "return `Result<T, E>` where `E: std::fmt::Display`, or a type implementing `saga_tracker::StepOutcome`",
    note = "a step that cannot fail records SUCCEEDED only; the tracker needs FAILED too, so the step must be able to say it failed",
    note = "with `error_kind = f`, `f` must take `&E` (the step's error) and return a `Display` value such as `&'static str`"
)]
pub trait Describe<R> {
    /// The error to record, if the step failed.
    fn describe(self, outcome: &R) -> Option<StepError>;
}

/// The default classifier: [`StepOutcome::error_kind`] (the error type's name).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultKind;

impl<R: StepOutcome> Describe<R> for DefaultKind {
    #[inline(always)]
    fn describe(self, outcome: &R) -> Option<StepError> {
        outcome.failure().map(failure_of::<R>)
    }
}

/// The error a failure records (formatted on the failure path only, out of the caller's inlined code).
#[cold]
#[inline(never)]
fn failure_of<R: StepOutcome>(error: &R::Error) -> StepError {
    StepError {
        kind: R::error_kind(error).into_owned(),
        message: error.to_string(),
    }
}

/// A user-supplied classifier (`error_kind = <fn or closure>`): any `FnOnce(&E) -> K` with `K: Display`.
#[derive(Debug, Clone, Copy)]
pub struct ClassifyWith<F>(pub F);

impl<R: StepOutcome, F, K> Describe<R> for ClassifyWith<F>
where
    F: FnOnce(&R::Error) -> K,
    K: Display,
{
    #[inline(always)]
    fn describe(self, outcome: &R) -> Option<StepError> {
        outcome.failure().map(|error| classified(self.0, error))
    }
}

/// The error a failure records, classified by `classify` (the failure path only).
#[cold]
#[inline(never)]
fn classified<E: ?Sized + Display, F: FnOnce(&E) -> K, K: Display>(
    classify: F,
    error: &E,
) -> StepError {
    StepError {
        kind: classify(error).to_string(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages() {
        let p: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(panic_message(p.as_ref()), "boom");
        let p: Box<dyn Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_message(p.as_ref()), "bang");
        let p: Box<dyn Any + Send> = Box::new(3u8);
        assert_eq!(panic_message(p.as_ref()), "panic payload is not a string");
    }
}
