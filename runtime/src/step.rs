//! What `#[saga_step]` / `#[saga_compensation]` expand to at run time: a [`StepGuard`] that records the start
//! event when created and exactly one terminal event: on the returned outcome, on a panic (kind `panic`), or
//! when dropped unfinished (kind `cancelled`: an async step whose future was dropped).
//!
//! The hot path (STARTED + SUCCEEDED) allocates the saga id once (`Arc<str>`, shared by both events); saga type
//! and step are `&'static str`; nothing is formatted unless the step fails.

use std::any::Any;
use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt as _;
use futures::future::CatchUnwind;

use crate::Tracker;
use crate::event::{StepError, StepStatus};
use crate::otel::TraceIds;
use crate::registry::{HandlerKind, StepDescriptor};
use crate::saga::{SagaContext, StepOutcome};
use crate::transition::Transition;

/// The error kind recorded when a step panics.
pub const PANIC_KIND: &str = "panic";
/// The error kind recorded when an async step's future is dropped before it completes.
pub const CANCELLED_KIND: &str = "cancelled";

/// The ids and opt-in metadata of one step call.
#[derive(Debug, Clone)]
pub struct StepIds {
    saga_id: Arc<str>,
    order_id: Option<Arc<str>>,
    attempt: i32,
    metadata: Vec<(Cow<'static, str>, String)>,
}

impl StepIds {
    /// Ids with attempt 1, no order id and no metadata.
    #[inline]
    pub fn new(saga_id: Arc<str>) -> Self {
        StepIds {
            saga_id,
            order_id: None,
            attempt: 1,
            metadata: Vec::new(),
        }
    }

    /// Ids taken from a [`SagaContext`].
    #[inline]
    pub fn from_context<C: SagaContext + ?Sized>(context: &C) -> Self {
        StepIds {
            saga_id: Arc::from(context.saga_id()),
            order_id: context.order_id().map(Arc::from),
            attempt: context.attempt().unwrap_or(1),
            metadata: Vec::new(),
        }
    }

    /// Sets the order id.
    #[inline]
    pub fn order_id(mut self, order_id: Option<Arc<str>>) -> Self {
        self.order_id = order_id;
        self
    }

    /// Sets the attempt.
    #[inline]
    pub fn attempt(mut self, attempt: i32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Adds an opt-in metadata entry.
    pub fn metadata(mut self, key: &'static str, value: impl Display) -> Self {
        self.metadata.push((Cow::Borrowed(key), value.to_string()));
        self
    }

    /// The saga id.
    pub fn saga_id(&self) -> &str {
        &self.saga_id
    }
}

/// Records one handler call: the start event on [`StepGuard::start`], then exactly one terminal event.
#[derive(Debug)]
#[must_use = "a step guard records its terminal event when finished or dropped"]
pub struct StepGuard {
    descriptor: &'static StepDescriptor,
    tracker: Option<Tracker>,
    ids: StepIds,
    /// When STARTED was recorded. Durations are differences of the wall clock, which is read once per event
    /// (on some machines a clock read costs ~50 ns; a monotonic clock would double the reads). A clock stepped
    /// backwards mid-step gives a duration of 0.
    started: SystemTime,
    /// The OpenTelemetry ids of the span the step started in, used for its start and its end event.
    trace: Option<TraceIds>,
    finished: bool,
}

impl StepGuard {
    /// Records STARTED (COMPENSATION_STARTED for a compensation) through the current tracker.
    #[inline]
    pub fn start(descriptor: &'static StepDescriptor, ids: StepIds) -> StepGuard {
        let guard = StepGuard {
            descriptor,
            tracker: crate::current(),
            ids,
            started: SystemTime::now(),
            trace: TraceIds::current(),
            finished: false,
        };
        let status = match descriptor.kind {
            HandlerKind::Step => StepStatus::Started,
            HandlerKind::Compensation => StepStatus::CompensationStarted,
        };
        guard.record_at(guard.started, status, None, None);
        guard
    }

    /// Records the terminal event for `outcome`, classifying a failure with [`StepOutcome::error_kind`].
    #[inline]
    pub fn finish<R: StepOutcome>(self, outcome: &R) {
        self.finish_with(outcome, DefaultKind);
    }

    /// Records the terminal event for `outcome`, described (classified) by `describe`.
    #[inline]
    pub fn finish_with<R, D: Describe<R>>(mut self, outcome: &R, describe: D) {
        self.finished = true;
        match describe.describe(outcome) {
            None => self.record(self.success_status(), None),
            Some(error) => self.record(self.failure_status(), Some(error)),
        }
    }

    /// Records a failure of kind `panic` with the panic's message, then resumes the panic unchanged.
    pub fn panicked(mut self, payload: Box<dyn Any + Send>) -> ! {
        self.finished = true;
        let error = StepError::new(PANIC_KIND, panic_message(payload.as_ref()));
        self.record(self.failure_status(), Some(error));
        drop(self);
        resume_unwind(payload)
    }

    fn success_status(&self) -> StepStatus {
        match self.descriptor.kind {
            HandlerKind::Step => StepStatus::Succeeded,
            HandlerKind::Compensation => StepStatus::Compensated,
        }
    }

    fn failure_status(&self) -> StepStatus {
        match self.descriptor.kind {
            HandlerKind::Step => StepStatus::Failed,
            HandlerKind::Compensation => StepStatus::CompensationFailed,
        }
    }

    /// Records a terminal event now, with the time since STARTED as its duration.
    fn record(&self, status: StepStatus, error: Option<StepError>) {
        let now = SystemTime::now();
        let duration = now.duration_since(self.started).unwrap_or(Duration::ZERO);
        self.record_at(now, status, Some(duration), error);
    }

    fn record_at(
        &self,
        at: SystemTime,
        status: StepStatus,
        duration: Option<Duration>,
        error: Option<StepError>,
    ) {
        let d = self.descriptor;
        let Some(tracker) = &self.tracker else {
            crate::tracker::note_unrecorded(d.saga_type, d.step);
            return;
        };
        let transition = Transition {
            saga_type: Cow::Borrowed(d.saga_type),
            step: Cow::Borrowed(d.step),
            saga_id: self.ids.saga_id.clone(),
            status,
            attempt: self.ids.attempt,
            order_id: self.ids.order_id.clone(),
            duration,
            error,
            metadata: self.ids.metadata.clone(),
        };
        if let Err(err) = tracker.record_traced(transition, at, self.trace) {
            tracing::error!(%err, handler = %d.fn_path(), "saga-tracker: a step transition could not be recorded");
        }
    }
}

impl Drop for StepGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let error = if std::thread::panicking() {
            StepError::new(PANIC_KIND, "the step panicked")
        } else {
            StepError::new(
                CANCELLED_KIND,
                "the step's future was dropped before it completed",
            )
        };
        self.record(self.failure_status(), Some(error));
    }
}

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
    #[inline]
    fn describe(self, outcome: &R) -> Option<StepError> {
        let error = outcome.failure()?;
        Some(StepError {
            kind: R::error_kind(error).into_owned(),
            message: error.to_string(),
        })
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
    #[inline]
    fn describe(self, outcome: &R) -> Option<StepError> {
        let error = outcome.failure()?;
        Some(StepError {
            kind: (self.0)(error).to_string(),
            message: error.to_string(),
        })
    }
}

/// Runs a sync step body: records the outcome, or the panic (then resumes it).
#[inline]
pub fn run_sync<R: StepOutcome, F: FnOnce() -> R>(guard: StepGuard, body: F) -> R {
    run_sync_with::<R, DefaultKind, F>(guard, DefaultKind, body)
}

/// [`run_sync`] with a classifier.
#[inline]
pub fn run_sync_with<R, D: Describe<R>, F: FnOnce() -> R>(
    guard: StepGuard,
    describe: D,
    body: F,
) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(outcome) => {
            guard.finish_with(&outcome, describe);
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
    guard: StepGuard,
    describe: D,
    result: Result<R, Box<dyn Any + Send>>,
) -> R {
    match result {
        Ok(outcome) => {
            guard.finish_with(&outcome, describe);
            outcome
        }
        Err(payload) => guard.panicked(payload),
    }
}

/// A value usable as a saga or order id: strings, `Arc<str>`, UUIDs, integers, and `Option`s and references of
/// those. `None` gives no id (an empty saga id is rejected by the tracker and logged).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as a saga or order id",
    label = "expected a string, Arc<str>, Uuid, integer, or an Option of one",
    note = "convert it yourself, e.g. `saga_id = cmd.id.to_string()`"
)]
pub trait IdValue {
    /// The id, if there is one.
    fn to_id(&self) -> Option<Arc<str>>;
}

impl IdValue for str {
    #[inline]
    fn to_id(&self) -> Option<Arc<str>> {
        Some(Arc::from(self))
    }
}

impl IdValue for String {
    #[inline]
    fn to_id(&self) -> Option<Arc<str>> {
        Some(Arc::from(self.as_str()))
    }
}

impl IdValue for Arc<str> {
    #[inline]
    fn to_id(&self) -> Option<Arc<str>> {
        Some(self.clone())
    }
}

impl IdValue for Box<str> {
    #[inline]
    fn to_id(&self) -> Option<Arc<str>> {
        Some(Arc::from(&**self))
    }
}

impl IdValue for Cow<'_, str> {
    #[inline]
    fn to_id(&self) -> Option<Arc<str>> {
        Some(Arc::from(&**self))
    }
}

impl IdValue for uuid::Uuid {
    fn to_id(&self) -> Option<Arc<str>> {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        Some(Arc::from(&*self.hyphenated().encode_lower(&mut buf)))
    }
}

impl<T: IdValue + ?Sized> IdValue for &T {
    #[inline]
    fn to_id(&self) -> Option<Arc<str>> {
        (**self).to_id()
    }
}

impl<T: IdValue + ?Sized> IdValue for &mut T {
    #[inline]
    fn to_id(&self) -> Option<Arc<str>> {
        (**self).to_id()
    }
}

impl<T: IdValue> IdValue for Option<T> {
    #[inline]
    fn to_id(&self) -> Option<Arc<str>> {
        self.as_ref().and_then(IdValue::to_id)
    }
}

/// Decimal digits of an integer into a stack buffer (no `fmt` machinery on the hot path; 64-bit division
/// unless the value needs 128 bits).
fn int_to_id(negative: bool, magnitude: u128) -> Option<Arc<str>> {
    let mut buf = [0u8; 40];
    let mut pos = buf.len();
    let mut push = |digit: u8| {
        pos -= 1;
        buf[pos] = b'0' + digit;
    };
    match u64::try_from(magnitude) {
        Ok(mut small) => loop {
            push((small % 10) as u8);
            small /= 10;
            if small == 0 {
                break;
            }
        },
        Err(_) => {
            let mut big = magnitude;
            loop {
                push((big % 10) as u8);
                big /= 10;
                if big == 0 {
                    break;
                }
            }
        }
    }
    if negative {
        pos -= 1;
        buf[pos] = b'-';
    }
    std::str::from_utf8(&buf[pos..]).ok().map(Arc::from)
}

macro_rules! unsigned_id {
    ($($t:ty),*) => {$(
        impl IdValue for $t {
            #[inline]
            fn to_id(&self) -> Option<Arc<str>> {
                int_to_id(false, *self as u128)
            }
        }
    )*};
}
macro_rules! signed_id {
    ($($t:ty),*) => {$(
        impl IdValue for $t {
            #[inline]
            fn to_id(&self) -> Option<Arc<str>> {
                int_to_id(*self < 0, (*self as i128).unsigned_abs())
            }
        }
    )*};
}
unsigned_id!(u8, u16, u32, u64, u128, usize);
signed_id!(i8, i16, i32, i64, i128, isize);

/// The saga id of `value` (the generated code's `saga_id = <expr>`); no id becomes the empty id.
#[inline]
pub fn saga_id<T: IdValue + ?Sized>(value: &T) -> Arc<str> {
    value.to_id().unwrap_or_else(|| Arc::from(""))
}

/// The order id of `value` (the generated code's `order_id = <expr>`).
#[inline]
pub fn order_id<T: IdValue + ?Sized>(value: &T) -> Option<Arc<str>> {
    value.to_id()
}

/// A value usable as an attempt number: any integer (saturated into `i32`), or an `Option` of one (None = 1).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as an attempt number",
    label = "expected an integer",
    note = "the attempt is 1 for the first try of a step"
)]
pub trait AttemptValue {
    /// The attempt number.
    fn to_attempt(&self) -> i32;
}

macro_rules! int_attempt {
    ($($t:ty),*) => {$(
        impl AttemptValue for $t {
            #[inline]
            #[allow(irrefutable_let_patterns)]
            fn to_attempt(&self) -> i32 {
                if let Ok(v) = i32::try_from(*self) { v } else if *self > 0 as $t { i32::MAX } else { i32::MIN }
            }
        }
    )*};
}
int_attempt!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
);

impl<T: AttemptValue + ?Sized> AttemptValue for &T {
    #[inline]
    fn to_attempt(&self) -> i32 {
        (**self).to_attempt()
    }
}

impl<T: AttemptValue> AttemptValue for Option<T> {
    #[inline]
    fn to_attempt(&self) -> i32 {
        self.as_ref().map_or(1, AttemptValue::to_attempt)
    }
}

/// The attempt of `value` (the generated code's `attempt = <expr>`).
#[inline]
pub fn attempt<T: AttemptValue + ?Sized>(value: &T) -> i32 {
    value.to_attempt()
}

// ---- finding a SagaContext argument (autoref specialisation, resolved at compile time) ----

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_common_types() {
        assert_eq!(saga_id("s-1").as_ref(), "s-1");
        assert_eq!(saga_id(&String::from("s-2")).as_ref(), "s-2");
        assert_eq!(saga_id(&42u64).as_ref(), "42");
        assert_eq!(saga_id(&-7i32).as_ref(), "-7");
        assert_eq!(
            saga_id(&u128::MAX).as_ref(),
            "340282366920938463463374607431768211455"
        );
        assert_eq!(saga_id(&None::<String>).as_ref(), "");
        let uuid = uuid::Uuid::from_u128(0x0190c3e2_5d4f_7c1a_9b2e_1234567890ab);
        assert_eq!(
            saga_id(&uuid).as_ref(),
            "0190c3e2-5d4f-7c1a-9b2e-1234567890ab"
        );
        assert_eq!(order_id(&Some("o-1")).as_deref(), Some("o-1"));
    }

    #[test]
    fn attempts_saturate() {
        assert_eq!(attempt(&3u8), 3);
        assert_eq!(attempt(&u64::MAX), i32::MAX);
        assert_eq!(attempt(&i64::MIN), i32::MIN);
        assert_eq!(attempt(&None::<u32>), 1);
    }

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
