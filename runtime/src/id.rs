//! [`Id`]: a saga or order id as a step call carries it. Ids up to [`Id::INLINE`] bytes (a hyphenated UUID is
//! 36, a 64-bit integer at most 20) are kept inline, so recording a step allocates nothing for them; longer ids
//! are shared (`Arc<str>`), allocated once per call.

use std::fmt;
use std::sync::Arc;

/// A saga or order id: inline up to [`Id::INLINE`] bytes, else shared. Cheap to clone either way.
///
/// ```
/// use saga_tracker::Id;
/// let id = Id::from("0190c3e2-5d4f-7c1a-9b2e-1234567890ab");
/// assert!(id.is_inline());
/// assert_eq!(id.as_str(), "0190c3e2-5d4f-7c1a-9b2e-1234567890ab");
/// assert_eq!(Id::from(42u64).as_str(), "42");
/// ```
#[derive(Clone)]
pub struct Id(Repr);

#[derive(Clone)]
enum Repr {
    /// `bytes[..len]` is valid UTF-8 (every constructor copies a `&str` or writes ASCII digits).
    Inline {
        len: u8,
        bytes: [u8; Id::INLINE],
    },
    Shared(Arc<str>),
}

impl Id {
    /// The longest id kept inline, in bytes.
    pub const INLINE: usize = 38;

    /// The empty id (a saga id that is empty is rejected when recorded).
    pub const fn empty() -> Id {
        Id(Repr::Inline {
            len: 0,
            bytes: [0; Id::INLINE],
        })
    }

    /// The id's text.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Valid by construction; the check is cheap for ids this short and keeps the crate free of unsafe code.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(text) => text,
        }
    }

    /// Whether the id is kept inline (no allocation).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }

    /// The id's length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Inline { len, .. } => usize::from(*len),
            Repr::Shared(text) => text.len(),
        }
    }

    /// Whether the id is empty.
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Repr::Inline { len, .. } => *len == 0,
            Repr::Shared(text) => text.is_empty(),
        }
    }

    /// The id as a shared string (allocates when the id is inline).
    pub fn to_shared(&self) -> Arc<str> {
        match &self.0 {
            Repr::Inline { .. } => Arc::from(self.as_str()),
            Repr::Shared(text) => text.clone(),
        }
    }

    /// The decimal digits of an integer (`itoa`: no `core::fmt` on the hot path). The longest (40 bytes, the
    /// digits of `i128::MIN`) is over the inline limit and shared.
    #[inline]
    pub(crate) fn from_integer<I: itoa::Integer>(value: I) -> Id {
        Id::from(itoa::Buffer::new().format(value))
    }
}

/// A saga id as a step call captures it: text ([`Id`]), or an integer or UUID kept as its value and written out as
/// text ([`RawId::to_id`]) on the tracker's worker thread, so the caller formats nothing. The text is exactly what
/// [`Id`] makes of the same value (`Id::from(42u64)`, the hyphenated lowercase UUID).
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct RawId(Raw);

#[derive(Clone, Debug)]
enum Raw {
    Text(Id),
    Unsigned(u64),
    Signed(i64),
    /// A `u128` or `i128` (little-endian bytes: the id keeps the alignment of 8 that a lane slot is laid out for).
    Unsigned128([u8; 16]),
    Signed128([u8; 16]),
    Uuid([u8; 16]),
}

impl RawId {
    /// An unsigned integer id.
    #[inline]
    pub fn unsigned(value: u64) -> RawId {
        RawId(Raw::Unsigned(value))
    }

    /// A signed integer id.
    #[inline]
    pub fn signed(value: i64) -> RawId {
        RawId(Raw::Signed(value))
    }

    /// A 128-bit unsigned integer id.
    #[inline]
    pub fn unsigned128(value: u128) -> RawId {
        RawId(Raw::Unsigned128(value.to_le_bytes()))
    }

    /// A 128-bit signed integer id.
    #[inline]
    pub fn signed128(value: i128) -> RawId {
        RawId(Raw::Signed128(value.to_le_bytes()))
    }

    /// A UUID id (written out hyphenated, lowercase).
    #[inline]
    pub fn uuid(value: uuid::Uuid) -> RawId {
        RawId(Raw::Uuid(value.into_bytes()))
    }

    /// The id as text (formats an integer or UUID).
    pub fn to_id(&self) -> Id {
        match &self.0 {
            Raw::Text(id) => id.clone(),
            _ => self.clone().into_id(),
        }
    }

    /// The id as text (formats an integer or UUID).
    #[inline]
    pub fn into_id(self) -> Id {
        match self.0 {
            Raw::Text(id) => id,
            Raw::Unsigned(n) => Id::from_integer(n),
            Raw::Signed(n) => Id::from_integer(n),
            Raw::Unsigned128(bytes) => Id::from_integer(u128::from_le_bytes(bytes)),
            Raw::Signed128(bytes) => Id::from_integer(i128::from_le_bytes(bytes)),
            Raw::Uuid(bytes) => Id::from(uuid::Uuid::from_bytes(bytes)),
        }
    }

    /// The length of a text id in bytes; `None` for an integer or UUID (never empty, at most 40 bytes).
    #[inline]
    pub(crate) fn text_len(&self) -> Option<usize> {
        match &self.0 {
            Raw::Text(id) => Some(id.len()),
            _ => None,
        }
    }
}

impl Default for RawId {
    /// The empty id.
    fn default() -> Self {
        RawId(Raw::Text(Id::empty()))
    }
}

impl From<Id> for RawId {
    #[inline]
    fn from(id: Id) -> RawId {
        RawId(Raw::Text(id))
    }
}

impl Default for Id {
    fn default() -> Self {
        Id::empty()
    }
}

impl From<&str> for Id {
    #[inline]
    fn from(text: &str) -> Id {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= Id::INLINE => {
                let mut bytes = [0u8; Id::INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Id(Repr::Inline { len, bytes })
            }
            _ => Id(Repr::Shared(Arc::from(text))),
        }
    }
}

impl From<Arc<str>> for Id {
    /// Keeps the shared string as it is (no copy), whatever its length.
    #[inline]
    fn from(text: Arc<str>) -> Id {
        Id(Repr::Shared(text))
    }
}

impl From<String> for Id {
    #[inline]
    fn from(text: String) -> Id {
        Id::from(text.as_str())
    }
}

impl From<u64> for Id {
    #[inline]
    fn from(value: u64) -> Id {
        Id::from_integer(value)
    }
}

impl From<uuid::Uuid> for Id {
    /// The hyphenated lowercase form (36 bytes, inline).
    #[inline]
    fn from(uuid: uuid::Uuid) -> Id {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        Id::from(&*uuid.hyphenated().encode_lower(&mut buf))
    }
}

impl std::ops::Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Id {}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_inline_and_long_ones_shared() {
        let uuid = "0190c3e2-5d4f-7c1a-9b2e-1234567890ab";
        assert!(Id::from(uuid).is_inline());
        let max = "x".repeat(Id::INLINE);
        assert!(Id::from(max.as_str()).is_inline());
        assert_eq!(Id::from(max.as_str()).as_str(), max);
        let long = "y".repeat(Id::INLINE + 1);
        let id = Id::from(long.as_str());
        assert!(!id.is_inline());
        assert_eq!(id.as_str(), long);
        assert_eq!(id.to_shared().as_ref(), long);
    }

    #[test]
    fn multi_byte_text_round_trips() {
        for text in ["", "é", "saga-ünïcode-🦀", &"ß".repeat(19), &"ß".repeat(20)] {
            let id = Id::from(text);
            assert_eq!(id.as_str(), text);
            assert_eq!(id.is_empty(), text.is_empty());
        }
    }

    #[test]
    fn integers_and_uuids() {
        assert_eq!(Id::from_integer(0u8).as_str(), "0");
        assert_eq!(Id::from_integer(-7i32).as_str(), "-7");
        assert_eq!(Id::from(u64::MAX).as_str(), "18446744073709551615");
        let big = Id::from_integer(i128::MIN);
        assert_eq!(big.as_str(), "-170141183460469231731687303715884105728");
        assert!(!big.is_inline(), "40 bytes is over the inline limit");
        let uuid = uuid::Uuid::from_u128(0x0190c3e2_5d4f_7c1a_9b2e_1234567890ab);
        assert_eq!(
            Id::from(uuid).as_str(),
            "0190c3e2-5d4f-7c1a-9b2e-1234567890ab"
        );
    }

    #[test]
    fn equality_ignores_representation() {
        let shared = Id::from(Arc::<str>::from("s-1"));
        assert!(!shared.is_inline());
        assert_eq!(shared, Id::from("s-1"));
        assert_eq!(shared, "s-1");
    }
}
