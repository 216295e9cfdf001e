//! [`Cause`]: the failure a compensation answers, written on its events as schema v2 `causeIdempotencyKey` so the
//! tracker links the compensation to that `FAILED` event whatever the producers' clocks say.
//!
//! A `#[saga_compensation]` call takes its cause from, in order:
//!
//! 1. its [`SagaContext`](crate::SagaContext) argument's [`cause`](crate::SagaContext::cause), when it has one;
//! 2. the [`Cause`] whose scope it runs in ([`Cause::scope`] for an async call, [`Cause::run`] for a sync one):
//!    what an orchestrator does with the failure its compensation command carries;
//! 3. the last failure of the same saga that a `#[saga_step]` recorded in this process (a saga whose steps and
//!    compensations run in one process needs nothing more).
//!
//! Otherwise the compensation has no cause and the tracker links it by time order, as for v1 events.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use crate::event::{SagaEvent, StepStatus};

/// The failure a compensation answers: the idempotency key of its `FAILED` event,
/// `{sagaId}:{step}:FAILED:{attempt}`.
///
/// ```
/// use saga_tracker::Cause;
/// let cause = Cause::failure("saga-42", "charge_payment", 1);
/// assert_eq!(cause.idempotency_key(), "saga-42:charge_payment:FAILED:1");
/// // async compensations: `cause.scope(refund(&wallets, saga_id)).await`
/// let released = cause.run(|| "a sync compensation runs here");
/// assert_eq!(released, "a sync compensation runs here");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cause(Arc<str>);

thread_local! {
    static SCOPED: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

impl Cause {
    /// The cause with this `FAILED` event's idempotency key (as carried in a compensation command).
    pub fn new(failure_idempotency_key: impl Into<Arc<str>>) -> Cause {
        Cause(failure_idempotency_key.into())
    }

    /// The failure of `step` (wire name) at `attempt` in saga `saga_id`.
    pub fn failure(saga_id: &str, step: &str, attempt: i32) -> Cause {
        Cause(SagaEvent::idempotency_key_for(saga_id, step, StepStatus::Failed, attempt).into())
    }

    /// The idempotency key of the `FAILED` event.
    pub fn idempotency_key(&self) -> &str {
        &self.0
    }

    /// Runs `f`; the compensations it calls answer this failure.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let previous = SCOPED.with(|s| s.replace(Some(Arc::clone(&self.0))));
        let _restore = Restore(previous);
        f()
    }

    /// Wraps `future`; the compensations it calls answer this failure (set while it is polled).
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            cause: self,
            future: Box::pin(future),
        }
    }
}

/// Puts the previous scoped cause back, also when the scoped code panics.
struct Restore(Option<Arc<str>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        SCOPED.with(|s| *s.borrow_mut() = previous);
    }
}

/// A future running in a [`Cause`]'s scope ([`Cause::scope`]).
#[must_use = "futures do nothing unless polled"]
pub struct Scoped<F> {
    cause: Cause,
    future: Pin<Box<F>>,
}

impl<F> std::fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped")
            .field("cause", &self.cause)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let future = this.future.as_mut();
        this.cause.run(|| future.poll(cx))
    }
}

/// The cause of the scope the caller runs in.
pub(crate) fn scoped() -> Option<Arc<str>> {
    SCOPED.with(|s| s.borrow().clone())
}

/// How many sagas' last failures this process remembers (oldest forgotten first).
const REMEMBERED: usize = 4096;

#[derive(Default)]
struct LastFailures {
    by_saga: HashMap<Arc<str>, Arc<str>>,
    order: VecDeque<Arc<str>>,
}

static LAST_FAILURES: LazyLock<Mutex<LastFailures>> = LazyLock::new(Mutex::default);

/// Remembers a step failure recorded in this process (the failure path only).
pub(crate) fn remember_failure(saga_id: &str, step: &str, attempt: i32) {
    let key: Arc<str> =
        SagaEvent::idempotency_key_for(saga_id, step, StepStatus::Failed, attempt).into();
    let Ok(mut last) = LAST_FAILURES.lock() else {
        return;
    };
    if let Some(k) = last.by_saga.get_mut(saga_id) {
        *k = key;
        return;
    }
    let saga: Arc<str> = saga_id.into();
    if last.order.len() >= REMEMBERED
        && let Some(oldest) = last.order.pop_front()
    {
        last.by_saga.remove(&oldest);
    }
    last.order.push_back(Arc::clone(&saga));
    last.by_saga.insert(saga, key);
}

/// The last step failure of `saga_id` recorded in this process.
pub(crate) fn last_failure(saga_id: &str) -> Option<Arc<str>> {
    LAST_FAILURES.lock().ok()?.by_saga.get(saga_id).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert_eq!(scoped(), None);
        let outer = Cause::failure("s", "a", 1);
        outer.run(|| {
            assert_eq!(scoped().as_deref(), Some("s:a:FAILED:1"));
            Cause::new("s:b:FAILED:2").run(|| {
                assert_eq!(scoped().as_deref(), Some("s:b:FAILED:2"));
            });
            assert_eq!(scoped().as_deref(), Some("s:a:FAILED:1"));
        });
        assert_eq!(scoped(), None);
        let value = futures::executor::block_on(Cause::new("k").scope(async { scoped() }));
        assert_eq!(value.as_deref(), Some("k"));
        assert_eq!(scoped(), None);
    }

    #[test]
    fn the_last_failure_of_a_saga_wins_and_old_sagas_are_forgotten() {
        remember_failure("remember-1", "a", 1);
        remember_failure("remember-1", "b", 2);
        assert_eq!(
            last_failure("remember-1").as_deref(),
            Some("remember-1:b:FAILED:2")
        );
        for i in 0..REMEMBERED {
            remember_failure(&format!("filler-{i}"), "a", 1);
        }
        assert_eq!(last_failure("remember-1"), None);
    }
}
