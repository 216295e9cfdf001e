//! The process-wide default tracker and scoped overrides, in the spirit of tracing's
//! `set_global_default` / `with_default`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use super::Tracker;

static GLOBAL: OnceLock<Tracker> = OnceLock::new();
static UNRECORDED: AtomicU64 = AtomicU64::new(0);
static WARNED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static SCOPED: RefCell<Vec<Tracker>> = const { RefCell::new(Vec::new()) };
}

/// Scoped trackers in use on all threads: while there are none (a service with its global tracker), a step call
/// does not look at its thread's [`SCOPED`] (a thread-local access and a borrow saved per call). A thread reads its
/// own increment, so a scope on this thread is always seen.
static SCOPES: AtomicUsize = AtomicUsize::new(0);

/// [`init`] was called twice.
#[derive(Debug, thiserror::Error)]
#[error("a global saga tracker is already installed (service `{existing}`)")]
pub struct InitError {
    existing: String,
}

/// Flushes the global tracker when dropped: keep it alive in `main`.
#[derive(Debug)]
#[must_use = "dropping the guard flushes the tracker; keep it until the end of main"]
pub struct FlushGuard {
    timeout: Duration,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if let Some(tracker) = GLOBAL.get()
            && let Err(err) = tracker.flush(self.timeout)
        {
            tracing::warn!(%err, "saga-tracker: flush at exit did not finish");
        }
    }
}

/// Installs the process-wide default tracker, used by `#[saga_step]` functions. Once per process.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = saga_tracker::KafkaSink::builder("localhost:9092").build()?;
/// let tracker = saga_tracker::Tracker::builder().service("order-service").sink(sink).build()?;
/// let _flush_on_exit = saga_tracker::init(tracker)?;
/// # Ok(()) }
/// ```
pub fn init(tracker: Tracker) -> Result<FlushGuard, InitError> {
    let timeout = tracker.inner.shutdown_timeout;
    GLOBAL.set(tracker).map_err(|_| InitError {
        existing: GLOBAL
            .get()
            .map(|t| t.service().to_owned())
            .unwrap_or_default(),
    })?;
    Ok(FlushGuard { timeout })
}

/// Runs `f` with `tracker` as this thread's current tracker (tests, or a second tracker in one process).
pub fn with_default<R>(tracker: &Tracker, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            SCOPED.with(|s| s.borrow_mut().pop());
            SCOPES.fetch_sub(1, Ordering::Relaxed);
        }
    }
    SCOPES.fetch_add(1, Ordering::Relaxed);
    SCOPED.with(|s| s.borrow_mut().push(tracker.clone()));
    let _pop = Pop;
    f()
}

/// Wraps a future so that every poll runs with `tracker` as the current tracker, on whatever thread polls it.
pub fn with_default_async<F: Future>(tracker: &Tracker, future: F) -> WithTracker<F> {
    WithTracker {
        tracker: tracker.clone(),
        future: Box::pin(future),
    }
}

/// A future running with a scoped tracker; see [`with_default_async`].
#[derive(Debug)]
pub struct WithTracker<F> {
    tracker: Tracker,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for WithTracker<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        with_default(&this.tracker, || this.future.as_mut().poll(cx))
    }
}

/// The current tracker: the innermost scoped one on this thread, else the global one.
#[inline]
pub fn current() -> Option<Tracker> {
    current_handle().map(|handle| (*handle).clone())
}

/// The current tracker as a step guard holds it: the global one by reference, so a call on the hot path does
/// not touch the reference count that every thread of the process shares; a scoped one by clone.
#[derive(Debug)]
pub(crate) enum TrackerHandle {
    Global(&'static Tracker),
    Scoped(Tracker),
}

impl std::ops::Deref for TrackerHandle {
    type Target = Tracker;
    #[inline]
    fn deref(&self) -> &Tracker {
        match self {
            TrackerHandle::Global(tracker) => tracker,
            TrackerHandle::Scoped(tracker) => tracker,
        }
    }
}

/// [`current`], as a [`TrackerHandle`].
#[inline]
pub(crate) fn current_handle() -> Option<TrackerHandle> {
    if SCOPES.load(Ordering::Relaxed) != 0
        && let Some(tracker) = scoped()
    {
        return Some(TrackerHandle::Scoped(tracker));
    }
    GLOBAL.get().map(TrackerHandle::Global)
}

/// This thread's innermost scoped tracker.
#[cold]
fn scoped() -> Option<Tracker> {
    SCOPED.with(|s| s.borrow().last().cloned())
}

/// Counts a transition that had no tracker to go to, and warns once.
pub(crate) fn note_unrecorded(saga_type: &str, step: &str) {
    UNRECORDED.fetch_add(1, Ordering::Relaxed);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::error!(
            saga_type,
            step,
            "saga-tracker: a step ran with no tracker installed; call saga_tracker::init(tracker) at start-up. Its events are not recorded (counted in saga_tracker::unrecorded_events())."
        );
    }
}

/// How many transitions ran with no tracker installed (see [`init`]).
pub fn unrecorded_events() -> u64 {
    UNRECORDED.load(Ordering::Relaxed)
}
