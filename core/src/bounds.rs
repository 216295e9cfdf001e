//! The bounds of the contract: the longest value each string of an event may hold, in UTF-8 bytes.
//!
//! One source of truth for both ends. The SDK enforces them when it records (ids and names over their bound are
//! refused with an error; free text — error kind and message, metadata — is cut with [`TRUNCATION_MARKER`]), and
//! the tracker service checks every event it reads with [`check`] and dead-letters what fails (reason
//! `too_large`) instead of letting PostgreSQL refuse the whole batch. Every bounded column fits a btree index row
//! (2704 bytes on 8 KiB pages) with room to spare. The table is in `schemas/README.md`.
//!
//! ```
//! use saga_tracker_core::bounds::{self, Field};
//! let mut event = saga_tracker_core::testing::sample_event();
//! assert_eq!(bounds::check(&event), Ok(()));
//! event.saga_id = "x".repeat(bounds::SAGA_ID + 1);
//! let err = bounds::check(&event).unwrap_err();
//! assert_eq!(err.field, Field::SagaId);
//! assert_eq!(err.to_string(), "`sagaId` is 257 bytes, over its bound of 256");
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::event::SagaEvent;

/// `sagaId`: a UUID is 36 bytes; room for composite business keys.
pub const SAGA_ID: usize = 256;
/// `sagaType`.
pub const SAGA_TYPE: usize = 128;
/// `step`.
pub const STEP: usize = 128;
/// `service`.
pub const SERVICE: usize = 128;
/// `orderId`.
pub const ORDER_ID: usize = 256;
/// `idempotencyKey`: `{sagaId}:{step}:{status}:{attempt}` of the longest saga id and step (418 bytes) fits.
pub const IDEMPOTENCY_KEY: usize = 512;
/// `error.kind`.
pub const ERROR_KIND: usize = 256;
/// `error.message`.
pub const ERROR_MESSAGE: usize = 8192;
/// A `metadata` key.
pub const METADATA_KEY: usize = 128;
/// A `metadata` value.
pub const METADATA_VALUE: usize = 2048;
/// `metadata` entries.
pub const METADATA_ENTRIES: usize = 64;
/// `metadata` keys and values together, in bytes.
pub const METADATA_TOTAL: usize = 16384;

/// Appended to text the SDK cut to its bound (counted in the bound).
pub const TRUNCATION_MARKER: &str = "…[truncated]";

/// A bounded part of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `sagaId`.
    SagaId,
    /// `sagaType`.
    SagaType,
    /// `step`.
    Step,
    /// `service`.
    Service,
    /// `orderId`.
    OrderId,
    /// `idempotencyKey`.
    IdempotencyKey,
    /// `error.kind`.
    ErrorKind,
    /// `error.message`.
    ErrorMessage,
    /// One `metadata` key.
    MetadataKey,
    /// One `metadata` value.
    MetadataValue,
    /// The number of `metadata` entries.
    MetadataEntries,
    /// `metadata` keys and values together.
    MetadataTotal,
}

impl Field {
    /// Every bounded field.
    pub const ALL: [Field; 12] = [
        Field::SagaId,
        Field::SagaType,
        Field::Step,
        Field::Service,
        Field::OrderId,
        Field::IdempotencyKey,
        Field::ErrorKind,
        Field::ErrorMessage,
        Field::MetadataKey,
        Field::MetadataValue,
        Field::MetadataEntries,
        Field::MetadataTotal,
    ];

    /// The field's name in the schema (`error.message`, `metadata` key, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Field::SagaId => "sagaId",
            Field::SagaType => "sagaType",
            Field::Step => "step",
            Field::Service => "service",
            Field::OrderId => "orderId",
            Field::IdempotencyKey => "idempotencyKey",
            Field::ErrorKind => "error.kind",
            Field::ErrorMessage => "error.message",
            Field::MetadataKey => "metadata key",
            Field::MetadataValue => "metadata value",
            Field::MetadataEntries => "metadata",
            Field::MetadataTotal => "metadata (keys and values)",
        }
    }

    /// The bound: bytes, or entries for [`Field::MetadataEntries`].
    pub const fn max(self) -> usize {
        match self {
            Field::SagaId => SAGA_ID,
            Field::SagaType => SAGA_TYPE,
            Field::Step => STEP,
            Field::Service => SERVICE,
            Field::OrderId => ORDER_ID,
            Field::IdempotencyKey => IDEMPOTENCY_KEY,
            Field::ErrorKind => ERROR_KIND,
            Field::ErrorMessage => ERROR_MESSAGE,
            Field::MetadataKey => METADATA_KEY,
            Field::MetadataValue => METADATA_VALUE,
            Field::MetadataEntries => METADATA_ENTRIES,
            Field::MetadataTotal => METADATA_TOTAL,
        }
    }

    /// `bytes`, or `entries` for [`Field::MetadataEntries`].
    const fn unit(self) -> &'static str {
        match self {
            Field::MetadataEntries => "entries",
            _ => "bytes",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value over its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` is {len} {unit}, over its bound of {max}", unit = field.unit(), max = field.max())]
pub struct TooLarge {
    /// Which bound.
    pub field: Field,
    /// The length found (bytes, or entries).
    pub len: usize,
}

/// `Err` when `len` is over `field`'s bound.
#[inline]
pub fn check_len(field: Field, len: usize) -> Result<(), TooLarge> {
    if len > field.max() {
        Err(TooLarge { field, len })
    } else {
        Ok(())
    }
}

/// Checks every bound of `event`; the first violation in schema order.
pub fn check(event: &SagaEvent) -> Result<(), TooLarge> {
    check_len(Field::IdempotencyKey, event.idempotency_key.len())?;
    check_len(Field::SagaId, event.saga_id.len())?;
    check_len(Field::SagaType, event.saga_type.len())?;
    check_len(Field::Step, event.step.len())?;
    if let Some(order) = &event.order_id {
        check_len(Field::OrderId, order.len())?;
    }
    check_len(Field::Service, event.service.len())?;
    if let Some(error) = &event.error {
        check_len(Field::ErrorKind, error.kind.len())?;
        check_len(Field::ErrorMessage, error.message.len())?;
    }
    check_metadata(event.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Checks the metadata bounds of `entries`.
pub fn check_metadata<'a>(
    entries: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<(), TooLarge> {
    check_len(Field::MetadataEntries, entries.len())?;
    let mut total = 0usize;
    for (k, v) in entries {
        check_len(Field::MetadataKey, k.len())?;
        check_len(Field::MetadataValue, v.len())?;
        total += k.len() + v.len();
    }
    check_len(Field::MetadataTotal, total)
}

/// `text` unchanged when it fits `max` bytes; else its longest prefix (cut at a character boundary) that fits
/// with [`TRUNCATION_MARKER`] appended.
///
/// ```
/// use saga_tracker_core::bounds::{TRUNCATION_MARKER, truncate};
/// assert_eq!(truncate("short", 64), "short");
/// let long = "é".repeat(100);
/// let cut = truncate(&long, 64);
/// assert!(cut.len() <= 64 && cut.ends_with(TRUNCATION_MARKER));
/// ```
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max.saturating_sub(TRUNCATION_MARKER.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + TRUNCATION_MARKER.len());
    out.push_str(&text[..end]);
    if out.len() + TRUNCATION_MARKER.len() <= max {
        out.push_str(TRUNCATION_MARKER);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StepError;

    #[test]
    fn every_field_at_its_bound_passes_and_one_byte_more_fails() {
        let mut e = crate::testing::sample_event();
        e.saga_id = "s".repeat(SAGA_ID);
        e.saga_type = "t".repeat(SAGA_TYPE);
        e.step = "p".repeat(STEP);
        e.service = "v".repeat(SERVICE);
        e.order_id = Some("o".repeat(ORDER_ID));
        e.idempotency_key = "i".repeat(IDEMPOTENCY_KEY);
        e.error = Some(StepError::new(
            "k".repeat(ERROR_KIND),
            "m".repeat(ERROR_MESSAGE),
        ));
        assert_eq!(check(&e), Ok(()));
        for field in Field::ALL {
            let mut bad = e.clone();
            let over = |max: usize| "x".repeat(max + 1);
            match field {
                Field::SagaId => bad.saga_id = over(SAGA_ID),
                Field::SagaType => bad.saga_type = over(SAGA_TYPE),
                Field::Step => bad.step = over(STEP),
                Field::Service => bad.service = over(SERVICE),
                Field::OrderId => bad.order_id = Some(over(ORDER_ID)),
                Field::IdempotencyKey => bad.idempotency_key = over(IDEMPOTENCY_KEY),
                Field::ErrorKind => bad.error = Some(StepError::new(over(ERROR_KIND), "m")),
                Field::ErrorMessage => bad.error = Some(StepError::new("k", over(ERROR_MESSAGE))),
                Field::MetadataKey => {
                    bad.metadata.insert(over(METADATA_KEY), String::new());
                }
                Field::MetadataValue => {
                    bad.metadata.insert("k".into(), over(METADATA_VALUE));
                }
                Field::MetadataEntries => {
                    for i in 0..=METADATA_ENTRIES {
                        bad.metadata.insert(i.to_string(), String::new());
                    }
                }
                Field::MetadataTotal => {
                    // 16 entries of 1 + 1023 bytes fill the total; one byte more is over it
                    for i in 0..16u8 {
                        bad.metadata
                            .insert(char::from(b'a' + i).to_string(), "v".repeat(1023));
                    }
                    assert_eq!(check(&bad), Ok(()));
                    bad.metadata.insert("q".into(), String::new());
                }
            }
            let err = check(&bad).expect_err("over the bound");
            assert_eq!(err.field, field, "{err}");
            assert!(err.len > field.max());
        }
    }

    #[test]
    fn truncation_fits_and_keeps_characters_whole() {
        for max in [0, 1, 5, TRUNCATION_MARKER.len(), 20, 64, 100] {
            for text in [
                "",
                "plain ascii text that is long enough",
                &"é".repeat(60),
                &"😀".repeat(30),
            ] {
                let cut = truncate(text, max);
                if text.len() <= max {
                    assert_eq!(cut, text);
                } else if max >= TRUNCATION_MARKER.len() {
                    assert!(cut.len() <= max, "{max} {cut}");
                    assert!(cut.ends_with(TRUNCATION_MARKER), "{cut}");
                    let kept = &cut[..cut.len() - TRUNCATION_MARKER.len()];
                    assert!(text.starts_with(kept));
                } else {
                    assert_eq!(cut, "");
                }
            }
        }
    }
}
