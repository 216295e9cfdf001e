//! The event schema `SagaTracker.avsc` and its identity on the wire.
//!
//! The schema text is embedded from this package's `schemas/` (a test holds it byte-equal to the repository's
//! `schemas/SagaTracker.avsc` and `schemas/history/`).

use std::sync::LazyLock;

use crate::codec::fingerprint::{crc64_avro, parsing_canonical_form};

/// The text of `SagaTracker.avsc`, the current (v1) writer schema.
pub const SCHEMA_JSON: &str = include_str!("../schemas/SagaTracker.v1.avsc");

/// The schema version this crate writes.
pub const SCHEMA_VERSION: u32 = 1;

/// CRC-64-AVRO fingerprint of the v1 Parsing Canonical Form, as written after `C3 01` (little-endian bytes).
///
/// The `schema_fingerprint_matches_canonical_form` test recomputes it from [`SCHEMA_JSON`].
pub const FINGERPRINT_V1: [u8; 8] = [0x4e, 0xa4, 0xc6, 0x3a, 0xf7, 0xf1, 0x25, 0x18];

/// The two-byte marker that starts every Avro single-object encoded message.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xc3, 0x01];

/// The Parsing Canonical Form of [`SCHEMA_JSON`], per the Avro specification (logical types stripped).
pub fn canonical_form() -> &'static str {
    static PCF: LazyLock<String> = LazyLock::new(|| {
        // The schema is compiled into the crate and covered by tests; failing here is a build defect.
        #[allow(clippy::expect_used)]
        let value: serde_json::Value =
            serde_json::from_str(SCHEMA_JSON).expect("schemas/SagaTracker.avsc is valid JSON");
        #[allow(clippy::expect_used)]
        parsing_canonical_form(&value).expect("schemas/SagaTracker.avsc is a valid Avro schema")
    });
    &PCF
}

/// The fingerprint recomputed from [`SCHEMA_JSON`] (the wire uses the constant [`FINGERPRINT_V1`]).
pub fn computed_fingerprint() -> [u8; 8] {
    crc64_avro(canonical_form().as_bytes()).to_le_bytes()
}
