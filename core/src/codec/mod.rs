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
mod known;
mod read;
mod registry_ids;
mod resolve;
pub mod write;

use crate::event::SagaEvent;
use crate::schema::{self, FINGERPRINT, SINGLE_OBJECT_MAGIC, SchemaVersion};

pub use known::{KnownSchemas, KnownSchemasError};
pub use registry_ids::{RegistryIds, RegistryIdsError};
pub use resolve::MAX_RESOLVED_DATUM;
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
                out.extend_from_slice(&FINGERPRINT);
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
    /// A Confluent-framed message with a schema id that is not a configured one.
    #[error("unknown schema registry id {found}; configured: {known}")]
    UnknownSchemaId {
        /// The id in the message.
        found: u32,
        /// The configured ids and their versions.
        known: String,
    },
    /// A datum written with an older schema version that schema resolution could not read.
    #[error("cannot read a datum written with schema v{version}: {message}")]
    Resolution {
        /// The writer's schema version.
        version: u32,
        /// apache-avro's reason.
        message: String,
    },
    /// A boolean byte other than 0 or 1.
    #[error("`{field}` at offset {offset}: {value:#04x} is not an Avro boolean")]
    InvalidBoolean {
        /// The field being read.
        field: &'static str,
        /// Offset of the byte.
        offset: usize,
        /// The byte read.
        value: u8,
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

/// Decodes a bare Avro datum written with the current schema version (the hand-written fast path).
pub fn decode_datum(datum: &[u8]) -> Result<SagaEvent, DecodeError> {
    read::Reader::new(datum).event()
}

/// Decodes a bare Avro datum written with schema `version`: the fast path for the current version, Avro schema
/// resolution into the current model for an older one.
pub fn decode_datum_as(datum: &[u8], version: &SchemaVersion) -> Result<SagaEvent, DecodeError> {
    if version.fingerprint == FINGERPRINT {
        decode_datum(datum)
    } else {
        resolve::read(version, datum)
    }
}

/// Decodes an Avro single-object message written with any known schema version (picked by the fingerprint).
pub fn decode(message: &[u8]) -> Result<SagaEvent, DecodeError> {
    let (version, datum) = single_object_parts(message)?;
    decode_datum_as(datum, version)
}

/// Checks a single-object header and returns the writer's schema version and the datum after it.
pub fn single_object_parts(message: &[u8]) -> Result<(&'static SchemaVersion, &[u8]), DecodeError> {
    let (fingerprint, datum) = split_single_object(message)?;
    let version = schema::version_by_fingerprint(fingerprint).ok_or_else(|| {
        DecodeError::UnknownFingerprint {
            fingerprint: hex::encode(fingerprint),
            known: schema::known_fingerprints(),
        }
    })?;
    Ok((version, datum))
}

/// Checks a single-object header (magic, length) and splits the message into the writer's fingerprint and the
/// datum; which fingerprints are known is the caller's question.
pub(crate) fn split_single_object(message: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
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
    Ok(message[2..].split_at(SINGLE_OBJECT_HEADER_LEN - 2))
}

/// Checks a single-object header and returns the datum after it, which must be written with the current version
/// (for an older known version: [`single_object_parts`]).
pub fn single_object_datum(message: &[u8]) -> Result<&[u8], DecodeError> {
    let (version, datum) = single_object_parts(message)?;
    if version.fingerprint != FINGERPRINT {
        return Err(DecodeError::UnknownFingerprint {
            fingerprint: hex::encode(version.fingerprint),
            known: format!(
                "{} (v{}, the only version read as a bare datum)",
                hex::encode(FINGERPRINT),
                schema::SCHEMA_VERSION
            ),
        });
    }
    Ok(datum)
}

/// Decodes a Confluent-framed message whose schema id must be `expected_schema_id`, standing for the current
/// schema version.
pub fn decode_confluent(message: &[u8], expected_schema_id: u32) -> Result<SagaEvent, DecodeError> {
    decode_confluent_with(message, &RegistryIds::current(expected_schema_id))
}

/// Decodes a Confluent-framed message; its schema id picks the writer's version through `ids`.
pub fn decode_confluent_with(message: &[u8], ids: &RegistryIds) -> Result<SagaEvent, DecodeError> {
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
    let version = ids
        .version_of(found)
        .ok_or_else(|| DecodeError::UnknownSchemaId {
            found,
            known: ids.to_string(),
        })?;
    decode_datum_as(&message[5..], version)
}

/// Decodes a message in either framing: single-object (`C3 01`) or, when `confluent_schema_id` is given,
/// Confluent (`00`) with that id standing for the current version.
pub fn decode_any(
    message: &[u8],
    confluent_schema_id: Option<u32>,
) -> Result<SagaEvent, DecodeError> {
    match (message.first(), confluent_schema_id) {
        (Some(0), Some(id)) => decode_confluent(message, id),
        _ => decode(message),
    }
}

/// Decodes a message in either framing: single-object (`C3 01`) or, when `ids` is not empty, Confluent (`00`).
pub fn decode_any_with(message: &[u8], ids: &RegistryIds) -> Result<SagaEvent, DecodeError> {
    match message.first() {
        Some(0) if !ids.is_empty() => decode_confluent_with(message, ids),
        _ => decode(message),
    }
}

/// Decodes a message in either framing without checking a Confluent schema id (the datum is read as the current
/// version): for sinks and the spool, which only ever see their own tracker's messages.
pub fn decode_either_framing(message: &[u8]) -> Result<SagaEvent, DecodeError> {
    match message {
        [0, _, _, _, _, datum @ ..] => decode_datum(datum),
        _ => decode(message),
    }
}
