//! The ids of one step call ([`StepIds`]) and the values the generated code accepts as saga id, order id and
//! attempt ([`IdValue`], [`AttemptValue`]).

use std::borrow::Cow;
use std::fmt::Display;
use std::sync::Arc;

use crate::id::{Id, RawId};
use crate::saga::SagaContext;

/// The ids and opt-in metadata of one step call.
#[derive(Debug, Clone)]
pub struct StepIds {
    /// Kept as the caller gave it: an integer or UUID is written out as text on the worker's thread.
    pub(crate) saga_id: RawId,
    pub(crate) order_id: Option<Id>,
    pub(crate) attempt: i32,
    pub(crate) metadata: Vec<(Cow<'static, str>, String)>,
    /// On a compensation: the failure it answers (see [`Cause`](super::Cause)).
    pub(crate) cause: Option<Arc<str>>,
}

impl StepIds {
    /// Ids with attempt 1, no order id and no metadata.
    #[inline]
    pub fn new(saga_id: impl Into<RawId>) -> Self {
        StepIds {
            saga_id: saga_id.into(),
            order_id: None,
            attempt: 1,
            metadata: Vec::new(),
            cause: None,
        }
    }

    /// Ids taken from a [`SagaContext`].
    #[inline]
    pub fn from_context<C: SagaContext + ?Sized>(context: &C) -> Self {
        StepIds {
            saga_id: RawId::from(Id::from(context.saga_id())),
            order_id: context.order_id().map(Id::from),
            attempt: context.attempt().unwrap_or(1),
            metadata: Vec::new(),
            cause: context.cause().map(Arc::from),
        }
    }

    /// Sets the order id.
    #[inline]
    pub fn order_id(mut self, order_id: Option<Id>) -> Self {
        self.order_id = order_id;
        self
    }

    /// Sets the attempt.
    #[inline]
    pub fn attempt(mut self, attempt: i32) -> Self {
        self.attempt = attempt;
        self
    }

    /// On a compensation: the failure it answers, as that `FAILED` event's idempotency key.
    #[inline]
    pub fn caused_by(mut self, failure_idempotency_key: &str) -> Self {
        self.cause = Some(Arc::from(failure_idempotency_key));
        self
    }

    /// Adds an opt-in metadata entry.
    pub fn metadata(mut self, key: &'static str, value: impl Display) -> Self {
        self.metadata.push((Cow::Borrowed(key), value.to_string()));
        self
    }

    /// The saga id (an integer or UUID id written out as text).
    pub fn saga_id(&self) -> Id {
        self.saga_id.to_id()
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
    fn to_id(&self) -> Option<Id>;

    /// The id as a step call captures it (an integer or UUID unformatted: the tracker's worker writes it out).
    #[doc(hidden)]
    #[inline]
    fn to_raw_id(&self) -> Option<RawId> {
        self.to_id().map(RawId::from)
    }
}

impl IdValue for str {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        Some(Id::from(self))
    }
}

impl IdValue for String {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        Some(Id::from(self.as_str()))
    }
}

impl IdValue for Arc<str> {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        Some(Id::from(self.clone()))
    }
}

impl IdValue for Box<str> {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        Some(Id::from(&**self))
    }
}

impl IdValue for Cow<'_, str> {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        Some(Id::from(&**self))
    }
}

impl IdValue for Id {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        Some(self.clone())
    }
}

impl IdValue for uuid::Uuid {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        Some(Id::from(*self))
    }

    #[inline]
    fn to_raw_id(&self) -> Option<RawId> {
        Some(RawId::uuid(*self))
    }
}

impl<T: IdValue + ?Sized> IdValue for &T {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        (**self).to_id()
    }

    #[inline]
    fn to_raw_id(&self) -> Option<RawId> {
        (**self).to_raw_id()
    }
}

impl<T: IdValue + ?Sized> IdValue for &mut T {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        (**self).to_id()
    }

    #[inline]
    fn to_raw_id(&self) -> Option<RawId> {
        (**self).to_raw_id()
    }
}

impl<T: IdValue> IdValue for Option<T> {
    #[inline]
    fn to_id(&self) -> Option<Id> {
        self.as_ref().and_then(IdValue::to_id)
    }

    #[inline]
    fn to_raw_id(&self) -> Option<RawId> {
        self.as_ref().and_then(IdValue::to_raw_id)
    }
}

macro_rules! integer_id {
    ($raw:ident: $($t:ty),*) => {$(
        impl IdValue for $t {
            #[inline]
            fn to_id(&self) -> Option<Id> {
                Some(Id::from_integer(*self))
            }

            #[inline]
            fn to_raw_id(&self) -> Option<RawId> {
                Some(RawId::$raw((*self).into()))
            }
        }
    )*};
    // pointer-sized: as wide as 64 bits on every target Rust supports today; a wider value is written out here
    ($raw:ident as $wide:ty: $($t:ty),*) => {$(
        impl IdValue for $t {
            #[inline]
            fn to_id(&self) -> Option<Id> {
                Some(Id::from_integer(*self))
            }

            #[inline]
            fn to_raw_id(&self) -> Option<RawId> {
                Some(<$wide>::try_from(*self)
                    .map_or_else(|_| RawId::from(Id::from_integer(*self)), RawId::$raw))
            }
        }
    )*};
}
integer_id!(unsigned: u8, u16, u32, u64);
integer_id!(signed: i8, i16, i32, i64);
integer_id!(unsigned128: u128);
integer_id!(signed128: i128);
integer_id!(unsigned as u64: usize);
integer_id!(signed as i64: isize);

/// The saga id of `value` (the generated code's `saga_id = <expr>`); no id becomes the empty id.
#[inline]
pub fn saga_id<T: IdValue + ?Sized>(value: &T) -> Id {
    value.to_id().unwrap_or_default()
}

/// The saga id of `value` as a step call captures it (the generated code's `saga_id = <expr>`): an integer or
/// UUID is kept unformatted; no id becomes the empty id.
#[inline]
pub fn raw_saga_id<T: IdValue + ?Sized>(value: &T) -> RawId {
    value.to_raw_id().unwrap_or_default()
}

/// The order id of `value` (the generated code's `order_id = <expr>`).
#[inline]
pub fn order_id<T: IdValue + ?Sized>(value: &T) -> Option<Id> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_common_types() {
        assert_eq!(saga_id("s-1"), "s-1");
        assert_eq!(saga_id(&String::from("s-2")), "s-2");
        assert_eq!(saga_id(&42u64), "42");
        assert_eq!(saga_id(&-7i32), "-7");
        assert_eq!(saga_id(&i64::MIN), "-9223372036854775808");
        assert_eq!(
            saga_id(&u128::MAX),
            "340282366920938463463374607431768211455"
        );
        assert_eq!(saga_id(&None::<String>), "");
        let uuid = uuid::Uuid::from_u128(0x0190c3e2_5d4f_7c1a_9b2e_1234567890ab);
        assert_eq!(saga_id(&uuid), "0190c3e2-5d4f-7c1a-9b2e-1234567890ab");
        assert!(saga_id(&uuid).is_inline(), "a UUID needs no allocation");
        assert_eq!(order_id(&Some("o-1")).as_deref(), Some("o-1"));
        let long = "z".repeat(100);
        assert_eq!(saga_id(&long).as_str(), long);
    }

    #[test]
    fn attempts_saturate() {
        assert_eq!(attempt(&3u8), 3);
        assert_eq!(attempt(&u64::MAX), i32::MAX);
        assert_eq!(attempt(&i64::MIN), i32::MIN);
        assert_eq!(attempt(&None::<u32>), 1);
    }
}
