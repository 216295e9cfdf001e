//! Finding the argument that is a [`SagaContext`] at compile time (autoref specialisation), for steps that take
//! their saga id from one.

use super::StepIds;
use crate::saga::SagaContext;

/// Wraps a reference to one argument so method resolution can ask "does its type implement [`SagaContext`]?".
#[derive(Debug)]
pub struct Probe<'a, T: ?Sized>(pub &'a T);

/// The argument's type implements [`SagaContext`].
#[derive(Debug)]
pub struct Found<'a, T: ?Sized>(pub &'a T);

/// The argument's type does not implement [`SagaContext`].
#[derive(Debug, Clone, Copy)]
pub struct NotFound;

/// Chosen by method resolution for `(&Probe(&arg)).saga_context_probe()` when the type implements [`SagaContext`].
pub trait ProbeFound<'a, T: ?Sized> {
    /// The argument, found.
    fn saga_context_probe(&self) -> Found<'a, T>;
}

impl<'a, T: SagaContext + ?Sized> ProbeFound<'a, T> for Probe<'a, T> {
    #[inline]
    fn saga_context_probe(&self) -> Found<'a, T> {
        Found(self.0)
    }
}

/// The fallback of [`ProbeFound`] (one more auto-reference away): the argument is no saga context.
pub trait ProbeNotFound {
    /// Nothing found.
    fn saga_context_probe(&self) -> NotFound;
}

impl<T: ?Sized> ProbeNotFound for &Probe<'_, T> {
    #[inline]
    fn saga_context_probe(&self) -> NotFound {
        NotFound
    }
}

/// A list `(probe0, (probe1, (..., ())))` of probed arguments with at least one [`Found`].
#[diagnostic::on_unimplemented(
    message = "#[saga_step] cannot tell which saga this call belongs to: no saga id source",
    label = "no saga id source for this step",
    note = "give the saga id in one of three ways:\n  1. `saga_id = <expr over the arguments>` in the attribute, e.g. #[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id)]\n  2. mark a parameter `#[saga_id]`, e.g. `fn reserve(#[saga_id] saga_id: &str, ...)`\n  3. pass an argument whose type implements `saga_tracker::SagaContext`"
)]
pub trait ContextList {
    /// The ids of the first found context.
    fn ids(&self) -> StepIds;
}

impl<T: SagaContext + ?Sized, Rest> ContextList for (Found<'_, T>, Rest) {
    #[inline]
    fn ids(&self) -> StepIds {
        StepIds::from_context(self.0.0)
    }
}

impl<Rest: ContextList> ContextList for (NotFound, Rest) {
    #[inline]
    fn ids(&self) -> StepIds {
        self.1.ids()
    }
}

/// The ids of the first argument that is a [`SagaContext`].
#[inline]
pub fn context_ids<L: ContextList>(list: L) -> StepIds {
    list.ids()
}
