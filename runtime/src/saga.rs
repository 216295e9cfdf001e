//! Saga declarations and the traits `#[saga_step]` functions rely on: [`Saga`], [`SagaContext`], [`StepOutcome`].
//!
//! A saga type is declared once, as an enum shared by every participating service, with `#[derive(Saga)]`:
//!
//! ```
//! use saga_tracker::Saga;
//!
//! #[derive(Saga)]
//! #[saga(name = "OrderSaga")]
//! pub enum OrderSaga {
//!     #[step(compensable)]
//!     ReserveStock,
//!     #[step(compensable)]
//!     ChargePayment,
//!     #[step(name = "confirm")]
//!     ConfirmOrder,
//! }
//!
//! assert_eq!(<OrderSaga as Saga>::NAME, "OrderSaga");
//! assert_eq!(OrderSaga::ReserveStock.wire_name(), "reserve_stock");
//! assert_eq!(OrderSaga::ConfirmOrder.wire_name(), "confirm");
//! assert!(OrderSaga::ChargePayment.step().compensable);
//! ```

use std::borrow::Cow;
use std::fmt::Display;
use std::sync::Arc;

/// One declared step of a saga type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepDecl {
    /// The enum variant, e.g. `ReserveStock`.
    pub variant: &'static str,
    /// The step's wire name, e.g. `reserve_stock` (snake_case of the variant unless overridden).
    pub name: &'static str,
    /// Whether the step has a compensation (`#[step(compensable)]`).
    pub compensable: bool,
}

/// A saga type: its wire name and its steps. Implement it with `#[derive(Saga)]` on a fieldless enum; the
/// variant order is the step order and `variant as u16` is the index into [`Saga::STEPS`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a saga declaration",
    label = "not declared with #[derive(Saga)]",
    note = "declare the saga type once, shared by all its services: `#[derive(saga_tracker::Saga)] enum {Self} {{ StepA, StepB, .. }}`"
)]
pub trait Saga: Sized + 'static {
    /// The saga type's wire name, e.g. `OrderSaga`.
    const NAME: &'static str;
    /// Every declared step, in declaration order.
    const STEPS: &'static [StepDecl];

    /// This step's index in [`Saga::STEPS`].
    fn index(&self) -> u16;

    /// This step's declaration.
    fn step(&self) -> &'static StepDecl {
        &Self::STEPS[usize::from(self.index())]
    }

    /// This step's wire name.
    fn wire_name(&self) -> &'static str {
        self.step().name
    }
}

/// A value that carries the saga id (and optionally the order id, attempt) of the step it is passed to.
///
/// When a `#[saga_step]` function has neither `saga_id = <expr>` nor a `#[saga_id]` parameter, the first argument
/// whose type implements `SagaContext` supplies the ids. Implemented for references, `Box` and `Arc` of
/// implementors too.
///
/// ```
/// struct StepCtx { saga: String, order: String }
/// impl saga_tracker::SagaContext for StepCtx {
///     fn saga_id(&self) -> &str { &self.saga }
///     fn order_id(&self) -> Option<&str> { Some(&self.order) }
/// }
/// ```
pub trait SagaContext {
    /// The saga instance id.
    fn saga_id(&self) -> &str;
    /// The business order id, if the saga has one.
    fn order_id(&self) -> Option<&str> {
        None
    }
    /// Which attempt of the step this is (1 for the first). Used unless `attempt = <expr>` is given.
    fn attempt(&self) -> Option<i32> {
        None
    }
    /// On a compensation: the idempotency key of the `FAILED` event it answers
    /// ([`Cause::idempotency_key`](crate::Cause::idempotency_key)), e.g. carried in the compensation command.
    fn cause(&self) -> Option<&str> {
        None
    }
}

impl<T: SagaContext + ?Sized> SagaContext for &T {
    fn saga_id(&self) -> &str {
        (**self).saga_id()
    }
    fn order_id(&self) -> Option<&str> {
        (**self).order_id()
    }
    fn attempt(&self) -> Option<i32> {
        (**self).attempt()
    }
    fn cause(&self) -> Option<&str> {
        (**self).cause()
    }
}

impl<T: SagaContext + ?Sized> SagaContext for &mut T {
    fn saga_id(&self) -> &str {
        (**self).saga_id()
    }
    fn order_id(&self) -> Option<&str> {
        (**self).order_id()
    }
    fn attempt(&self) -> Option<i32> {
        (**self).attempt()
    }
    fn cause(&self) -> Option<&str> {
        (**self).cause()
    }
}

impl<T: SagaContext + ?Sized> SagaContext for Box<T> {
    fn saga_id(&self) -> &str {
        (**self).saga_id()
    }
    fn order_id(&self) -> Option<&str> {
        (**self).order_id()
    }
    fn attempt(&self) -> Option<i32> {
        (**self).attempt()
    }
    fn cause(&self) -> Option<&str> {
        (**self).cause()
    }
}

impl<T: SagaContext + ?Sized> SagaContext for Arc<T> {
    fn saga_id(&self) -> &str {
        (**self).saga_id()
    }
    fn order_id(&self) -> Option<&str> {
        (**self).order_id()
    }
    fn attempt(&self) -> Option<i32> {
        (**self).attempt()
    }
    fn cause(&self) -> Option<&str> {
        (**self).cause()
    }
}

/// What a step function returns: something that says whether the step failed, and why.
///
/// Implemented for every `Result<T, E>` with `E: Display`. Implement it for your own outcome type to use it as
/// the return type of a `#[saga_step]` function.
#[diagnostic::on_unimplemented(
    message = "a #[saga_step] fn returning `{Self}` cannot report failure",
    label = "this return type cannot report failure",
    note = "return `Result<T, E>` where `E: std::fmt::Display`, or a type implementing `saga_tracker::StepOutcome`",
    note = "a step that cannot fail records SUCCEEDED only; the tracker needs FAILED too, so the step must be able to say it failed"
)]
pub trait StepOutcome {
    /// The error type; its `Display` text becomes the event's error message.
    type Error: ?Sized + Display;

    /// The error, if the step failed.
    fn failure(&self) -> Option<&Self::Error>;

    /// The error kind recorded for `error` (default: the error type's name without its module path).
    fn error_kind(error: &Self::Error) -> Cow<'static, str> {
        let _ = error;
        short_type_name::<Self::Error>()
    }
}

impl<T, E: Display> StepOutcome for Result<T, E> {
    type Error = E;

    #[inline]
    fn failure(&self) -> Option<&E> {
        self.as_ref().err()
    }
}

/// A `metadata(key = <expr>)` value: anything `Display` (used by the generated code, so a value that is not
/// `Display` is reported at the user's expression).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a metadata value must implement `Display`, and `{Self}` does not",
    label = "this metadata value is not `Display`",
    note = "pass a `Display` value, e.g. `metadata(key = value.to_string())` or `metadata(key = format!(\"{{:?}}\", value))`"
)]
pub trait MetadataValue: Display {}

impl<T: ?Sized + Display> MetadataValue for T {}

/// Checks a metadata value at the user's expression (generated code); the result is `Display` in any case, so
/// a value that is not is reported once, there.
#[doc(hidden)]
#[inline]
pub fn metadata_value<T: ?Sized + MetadataValue>(value: &T) -> impl Display + '_ {
    Shown(value)
}

struct Shown<'a, T: ?Sized>(&'a T);

impl<T: ?Sized + Display> Display for Shown<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Checks an `error_kind = f` classifier against the step's outcome `R` at the user's expression: `f` takes
/// `&E` (the step's error type) and returns a `Display` kind (generated code). The result is a classifier for
/// `R` in any case, so a mismatch is reported once, there.
#[doc(hidden)]
#[inline]
pub fn error_kind_for<R: StepOutcome, K: Display, F: FnOnce(&R::Error) -> K>(
    f: F,
) -> impl crate::step::Describe<R> {
    crate::step::ClassifyWith(f)
}

/// `std::any::type_name::<T>()` without module paths: `my::errors::StockError` → `StockError`,
/// `alloc::boxed::Box<dyn core::error::Error>` → `Box<dyn Error>`.
pub fn short_type_name<T: ?Sized>() -> Cow<'static, str> {
    let full = std::any::type_name::<T>();
    if !full.contains("::") {
        return Cow::Borrowed(full);
    }
    let mut out = String::with_capacity(full.len());
    let mut segment_start = 0;
    for (i, c) in full.char_indices() {
        if !(c.is_alphanumeric() || c == '_' || c == ':') {
            out.push_str(last_segment(&full[segment_start..i]));
            out.push(c);
            segment_start = i + c.len_utf8();
        }
    }
    out.push_str(last_segment(&full[segment_start..]));
    Cow::Owned(out)
}

fn last_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    mod errors {
        pub struct StockError;
    }

    #[test]
    fn short_type_name_drops_module_paths() {
        assert_eq!(short_type_name::<errors::StockError>(), "StockError");
        assert_eq!(
            short_type_name::<Box<dyn std::error::Error + Send>>(),
            "Box<dyn Error + Send>"
        );
        assert_eq!(short_type_name::<u32>(), "u32");
        assert_eq!(short_type_name::<std::io::Error>(), "Error");
    }
}
