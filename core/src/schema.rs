//! The event schema `SagaTracker.avsc`, every released version of it, and their identities on the wire.
//!
//! The schema texts are embedded from this package's `schemas/` (a test holds them byte-equal to the repository's
//! `schemas/SagaTracker.avsc` and `schemas/history/`). The codec writes the current version ([`SCHEMA_VERSION`])
//! and reads every version in [`VERSIONS`], picked by the fingerprint in the message header.

use std::sync::LazyLock;

use crate::codec::fingerprint::{crc64_avro, parsing_canonical_form};

/// The text of `history/SagaTracker.v1.avsc`.
pub const SCHEMA_V1_JSON: &str = include_str!("../schemas/SagaTracker.v1.avsc");

/// The text of `history/SagaTracker.v2.avsc`.
pub const SCHEMA_V2_JSON: &str = include_str!("../schemas/SagaTracker.v2.avsc");

/// The text of `SagaTracker.avsc`, the current (v2) writer schema.
pub const SCHEMA_JSON: &str = SCHEMA_V2_JSON;

/// The schema version this crate writes.
pub const SCHEMA_VERSION: u32 = 2;

/// CRC-64-AVRO fingerprint of the v1 Parsing Canonical Form, as written after `C3 01` (little-endian bytes).
pub const FINGERPRINT_V1: [u8; 8] = [0x4e, 0xa4, 0xc6, 0x3a, 0xf7, 0xf1, 0x25, 0x18];

/// CRC-64-AVRO fingerprint of the v2 Parsing Canonical Form, as written after `C3 01` (little-endian bytes).
pub const FINGERPRINT_V2: [u8; 8] = [0xf5, 0x50, 0x0e, 0x0a, 0x1f, 0xce, 0xfd, 0xfe];

/// The fingerprint of the current version: what this crate writes after `C3 01`.
pub const FINGERPRINT: [u8; 8] = FINGERPRINT_V2;

/// The two-byte marker that starts every Avro single-object encoded message.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xc3, 0x01];

/// One released version of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The version number (`N` of `history/SagaTracker.vN.avsc`).
    pub version: u32,
    /// The schema text.
    pub json: &'static str,
    /// The spec fingerprint, as written after `C3 01` (little-endian bytes).
    pub fingerprint: [u8; 8],
}

/// Every released version, oldest first; the last is the current one. A test recomputes each fingerprint.
pub const VERSIONS: &[SchemaVersion] = &[
    SchemaVersion {
        version: 1,
        json: SCHEMA_V1_JSON,
        fingerprint: FINGERPRINT_V1,
    },
    SchemaVersion {
        version: 2,
        json: SCHEMA_V2_JSON,
        fingerprint: FINGERPRINT_V2,
    },
];

/// The version whose fingerprint is `fingerprint`, if this crate knows it.
pub fn version_by_fingerprint(fingerprint: &[u8]) -> Option<&'static SchemaVersion> {
    VERSIONS.iter().find(|v| v.fingerprint == fingerprint)
}

/// The version numbered `version`, if this crate knows it.
pub fn version(version: u32) -> Option<&'static SchemaVersion> {
    VERSIONS.iter().find(|v| v.version == version)
}

/// `4ea4c63af7f12518 (v1), … (v2)`: the known fingerprints, for error messages.
pub fn known_fingerprints() -> String {
    VERSIONS
        .iter()
        .map(|v| format!("{} (v{})", hex::encode(v.fingerprint), v.version))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SchemaVersion {
    /// The Parsing Canonical Form of this version, per the Avro specification (logical types stripped).
    pub fn canonical_form(&self) -> String {
        // The schemas are compiled into the crate and covered by tests; failing here is a build defect.
        #[allow(clippy::expect_used)]
        let value: serde_json::Value =
            serde_json::from_str(self.json).expect("embedded schemas are valid JSON");
        #[allow(clippy::expect_used)]
        parsing_canonical_form(&value).expect("embedded schemas are valid Avro schemas")
    }

    /// The fingerprint recomputed from the text (the wire uses the constant [`SchemaVersion::fingerprint`]).
    pub fn computed_fingerprint(&self) -> [u8; 8] {
        crc64_avro(self.canonical_form().as_bytes()).to_le_bytes()
    }
}

/// The Parsing Canonical Form of [`SCHEMA_JSON`], per the Avro specification (logical types stripped).
pub fn canonical_form() -> &'static str {
    static PCF: LazyLock<String> = LazyLock::new(|| {
        VERSIONS
            .last()
            .map(SchemaVersion::canonical_form)
            .unwrap_or_default()
    });
    &PCF
}

/// The fingerprint recomputed from [`SCHEMA_JSON`] (the wire uses the constant [`FINGERPRINT`]).
pub fn computed_fingerprint() -> [u8; 8] {
    crc64_avro(canonical_form().as_bytes()).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_fingerprint_is_recomputed_from_its_text() {
        for v in VERSIONS {
            assert_eq!(
                hex::encode(v.computed_fingerprint()),
                hex::encode(v.fingerprint),
                "v{}",
                v.version
            );
        }
        assert_eq!(VERSIONS.last().map(|v| v.version), Some(SCHEMA_VERSION));
        assert_eq!(VERSIONS.last().map(|v| v.json), Some(SCHEMA_JSON));
    }
}
