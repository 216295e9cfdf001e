//! Avro codec for [`SagaEvent`]: the binary datum, single-object encoding and Confluent framing.
//!
//! ```
//! use saga_tracker_core::codec;
//! # let event = saga_tracker_core::testing::sample_event();
//! let bytes = codec::encode(&event);
//! assert_eq!(&bytes[..2], &[0xc3, 0x01]);
//! assert_eq!(codec::decode(&bytes).unwrap(), event);
//! ```

pub mod fingerprint;
mod read;
pub mod write;

use crate::event::SagaEvent;
use crate::schema::{FINGERPRINT_V1, SINGLE_OBJECT_MAGIC};

pub use write::write_datum;

/// Bytes before the datum in a single-object message: magic + fingerprint.
pub const SINGLE_OBJECT_HEADER_LEN: usize = 10;

/// How messages are framed on the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Avro single-object encoding: `C3 01`, the 8-byte schema fingerprint, the datum. The default.
    #[default]
    SingleObject,
    /// Confluent Schema Registry framing: `00`, the 4-byte big-endian schema id, the datum.
    Confluent {
        /// The id the schema registry gave `SagaTracker.avsc`.
        schema_id: u32,
    },
}

impl Framing {
    /// Appends this framing's header.
    pub fn write_header(self, out: &mut Vec<u8>) {
        match self {
            Framing::SingleObject => {
                out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
                out.extend_from_slice(&FINGERPRINT_V1);
            }
            Framing::Confluent { schema_id } => {
                out.push(0);
                out.extend_from_slice(&schema_id.to_be_bytes());
            }
        }
    }
}

/// Why bytes could not be decoded into an event. Offsets count from the start of the datum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Nothing to decode.
    #[error("empty message")]
    Empty,
    /// The header is shorter than 10 bytes.
    #[error("truncated single-object header: {len} bytes, need 10")]
    TruncatedHeader {
        /// Bytes present.
        len: usize,
    },
    /// The message does not start with `C3 01`.
    #[error("not an Avro single-object message: starts with {found:02x?}, expected [c3, 01]")]
    BadMagic {
        /// The first two bytes (or fewer).
        found: Vec<u8>,
    },
    /// The writer schema's fingerprint is not one this reader knows.
    #[error("unknown writer schema fingerprint {fingerprint}; known: {known}")]
    UnknownFingerprint {
        /// The fingerprint, as lowercase hex of the 8 header bytes.
        fingerprint: String,
        /// The fingerprints this reader knows.
        known: String,
    },
    /// A Confluent-framed message with a schema id that is not the configured one.
    #[error("unknown schema registry id {found}; expected {expected}")]
    UnknownSchemaId {
        /// The id in the message.
        found: u32,
        /// The configured id.
        expected: u32,
    },
    /// The datum ended inside a field.
    #[error("truncated datum: ended inside `{field}` at offset {offset}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where the datum ended.
        offset: usize,
    },
    /// A varint longer than 64 bits.
    #[error("malformed varint in `{field}` at offset {offset}")]
    VarintOverflow {
        /// The field being read.
        field: &'static str,
        /// Offset of the bad byte.
        offset: usize,
    },
    /// An `int` that does not fit 32 bits.
    #[error("`{field}` at offset {offset}: {value} does not fit an Avro int")]
    IntOutOfRange {
        /// The field being read.
        field: &'static str,
        /// Offset of the value.
        offset: usize,
        /// The value read.
        value: i64,
    },
    /// A negative string or bytes length.
    #[error("negative length {len} for `{field}` at offset {offset}")]
    NegativeLength {
        /// The field being read.
        field: &'static str,
        /// Offset of the length.
        offset: usize,
        /// The length read.
        len: i64,
    },
    /// A length or count larger than what is left of the message.
    #[error("`{field}` at offset {offset} claims {len} but only {remaining} bytes remain")]
    LengthBeyondPayload {
        /// The field being read.
        field: &'static str,
        /// Offset of the length.
        offset: usize,
        /// The claimed length or count.
        len: u64,
        /// Bytes left in the message.
        remaining: usize,
    },
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 in `{field}` at offset {offset}")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
        /// Offset of the string's length.
        offset: usize,
    },
    /// An enum index beyond the symbols.
    #[error("`{field}` at offset {offset}: enum index {index} out of range")]
    EnumIndexOutOfRange {
        /// The field being read.
        field: &'static str,
        /// Offset of the index.
        offset: usize,
        /// The index read.
        index: i64,
    },
    /// A union branch index beyond the branches.
    #[error("`{field}` at offset {offset}: union branch {index} out of range")]
    UnionIndexOutOfRange {
        /// The field being read.
        field: &'static str,
        /// Offset of the index.
        offset: usize,
        /// The index read.
        index: i64,
    },
    /// Bytes after a complete datum.
    #[error("{count} bytes left after the datum at offset {offset}")]
    TrailingBytes {
        /// Where the datum ended.
        offset: usize,
        /// How many bytes follow it.
        count: usize,
    },
    /// `eventId` is not a UUID.
    #[error("`eventId` at offset {offset} is not a UUID: {value:?}")]
    InvalidUuid {
        /// Offset of the string.
        offset: usize,
        /// The string read (at most 64 characters).
        value: String,
    },
}

/// Encodes one event as an Avro single-object message.
pub fn encode(event: &SagaEvent) -> Vec<u8> {
    encode_framed(event, Framing::SingleObject)
}

/// Encodes one event with the given framing.
pub fn encode_framed(event: &SagaEvent, framing: Framing) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    framing.write_header(&mut out);
    write_datum(event, &mut out);
    out
}

/// Decodes a bare Avro datum written with the v1 schema.
pub fn decode_datum(datum: &[u8]) -> Result<SagaEvent, DecodeError> {
    read::Reader::new(datum).event()
}

/// Decodes an Avro single-object message. The fingerprint must be one of the known schema versions.
pub fn decode(message: &[u8]) -> Result<SagaEvent, DecodeError> {
    decode_datum(single_object_datum(message)?)
}

/// Checks a single-object header and returns the datum after it.
pub fn single_object_datum(message: &[u8]) -> Result<&[u8], DecodeError> {
    if message.is_empty() {
        return Err(DecodeError::Empty);
    }
    let magic_len = message.len().min(2);
    if message[..magic_len] != SINGLE_OBJECT_MAGIC[..magic_len] {
        return Err(DecodeError::BadMagic {
            found: message[..magic_len].to_vec(),
        });
    }
    if message.len() < SINGLE_OBJECT_HEADER_LEN {
        return Err(DecodeError::TruncatedHeader { len: message.len() });
    }
    let fingerprint = &message[2..SINGLE_OBJECT_HEADER_LEN];
    if fingerprint != FINGERPRINT_V1 {
        return Err(DecodeError::UnknownFingerprint {
            fingerprint: hex::encode(fingerprint),
            known: format!("{} (v1)", hex::encode(FINGERPRINT_V1)),
        });
    }
    Ok(&message[SINGLE_OBJECT_HEADER_LEN..])
}

/// Decodes a Confluent-framed message whose schema id must be `expected_schema_id`.
pub fn decode_confluent(message: &[u8], expected_schema_id: u32) -> Result<SagaEvent, DecodeError> {
    if message.is_empty() {
        return Err(DecodeError::Empty);
    }
    if message[0] != 0 {
        return Err(DecodeError::BadMagic {
            found: message[..1].to_vec(),
        });
    }
    if message.len() < 5 {
        return Err(DecodeError::TruncatedHeader { len: message.len() });
    }
    let found = u32::from_be_bytes([message[1], message[2], message[3], message[4]]);
    if found != expected_schema_id {
        return Err(DecodeError::UnknownSchemaId {
            found,
            expected: expected_schema_id,
        });
    }
    decode_datum(&message[5..])
}

/// Decodes a message in either framing: single-object (`C3 01`) or, when `confluent_schema_id` is given,
/// Confluent (`00`).
pub fn decode_any(
    message: &[u8],
    confluent_schema_id: Option<u32>,
) -> Result<SagaEvent, DecodeError> {
    match (message.first(), confluent_schema_id) {
        (Some(0), Some(id)) => decode_confluent(message, id),
        _ => decode(message),
    }
}

/// Decodes a message in either framing without checking a Confluent schema id: for sinks and the spool, which only
/// ever see their own tracker's messages.
pub fn decode_either_framing(message: &[u8]) -> Result<SagaEvent, DecodeError> {
    match message {
        [0, _, _, _, _, datum @ ..] => decode_datum(datum),
        _ => decode(message),
    }
}
