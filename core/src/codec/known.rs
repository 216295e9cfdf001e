//! [`KnownSchemas`]: what one reader accepts, the schema versions it knows (every version of this build by default)
//! and the schema-registry ids of Confluent framing. The tracker builds one from its configuration; a reader
//! limited to older versions stands for a tracker that was not upgraded yet (its unknown versions go to the DLQ
//! as `unknown_fingerprint` / `unknown_schema_id`, re-drivable once it knows them).
//!
//! ```
//! use saga_tracker_core::codec::{self, DecodeError, KnownSchemas};
//! # let event = saga_tracker_core::testing::sample_event();
//! let v2_message = codec::encode(&event);
//! assert_eq!(KnownSchemas::all().decode(&v2_message).unwrap(), event);
//! let v1_only = KnownSchemas::only(&[1]).unwrap();
//! assert!(matches!(v1_only.decode(&v2_message), Err(DecodeError::UnknownFingerprint { .. })));
//! ```

use std::fmt;

use super::{DecodeError, RegistryIds, decode_datum_as, split_single_object};
use crate::event::SagaEvent;
use crate::schema::{self, SchemaVersion, VERSIONS};

/// The schema versions a reader knows and the Confluent schema-registry ids it maps to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownSchemas {
    versions: Vec<&'static SchemaVersion>,
    ids: RegistryIds,
}

/// A set of versions or ids a reader cannot be built with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KnownSchemasError {
    /// A version this build does not embed.
    #[error("schema v{version} is not known to this build (known: {known})")]
    UnknownVersion {
        /// The version asked for.
        version: u32,
        /// The versions this build embeds.
        known: String,
    },
    /// No version at all.
    #[error("a reader needs at least one schema version")]
    Empty,
    /// A registry id mapped to a version outside the reader's versions.
    #[error(
        "schema registry id {id} maps to v{version}, which this reader does not know (it knows {known})"
    )]
    IdOutsideVersions {
        /// The id.
        id: u32,
        /// Its version.
        version: u32,
        /// The reader's versions.
        known: String,
    },
}

impl Default for KnownSchemas {
    fn default() -> Self {
        Self::all()
    }
}

impl KnownSchemas {
    /// Every version of this build, no Confluent ids.
    pub fn all() -> Self {
        KnownSchemas {
            versions: VERSIONS.iter().collect(),
            ids: RegistryIds::new(),
        }
    }

    /// Only the listed versions (e.g. `&[1]`: a reader that was never upgraded to v2), no Confluent ids.
    pub fn only(versions: &[u32]) -> Result<Self, KnownSchemasError> {
        if versions.is_empty() {
            return Err(KnownSchemasError::Empty);
        }
        let mut known: Vec<&'static SchemaVersion> = Vec::with_capacity(versions.len());
        for &version in versions {
            let v = schema::version(version).ok_or_else(|| KnownSchemasError::UnknownVersion {
                version,
                known: schema::known_fingerprints(),
            })?;
            if !known.contains(&v) {
                known.push(v);
            }
        }
        known.sort_by_key(|v| v.version);
        Ok(KnownSchemas {
            versions: known,
            ids: RegistryIds::new(),
        })
    }

    /// Also reads Confluent framing (`00` + schema id) for the ids of `ids`; each must map to a known version.
    pub fn with_registry_ids(mut self, ids: RegistryIds) -> Result<Self, KnownSchemasError> {
        for (id, v) in ids.iter() {
            if !self.versions.contains(&v) {
                return Err(KnownSchemasError::IdOutsideVersions {
                    id,
                    version: v.version,
                    known: self.describe_versions(),
                });
            }
        }
        self.ids = ids;
        Ok(self)
    }

    /// The versions, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &'static SchemaVersion> + '_ {
        self.versions.iter().copied()
    }

    /// The Confluent ids.
    pub fn registry_ids(&self) -> &RegistryIds {
        &self.ids
    }

    /// `4ea4c63af7f12518 (v1), f5500e0a1fcefdfe (v2)`: the fingerprints this reader knows.
    pub fn describe_versions(&self) -> String {
        self.versions
            .iter()
            .map(|v| format!("{} (v{})", hex::encode(v.fingerprint), v.version))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Decodes a single-object message, or a Confluent-framed one when ids are configured: the writer's version
    /// is picked by the fingerprint or the id, and must be one of this reader's.
    pub fn decode(&self, message: &[u8]) -> Result<SagaEvent, DecodeError> {
        match message.first() {
            Some(0) if !self.ids.is_empty() => self.decode_confluent(message),
            _ => {
                let (version, datum) = self.single_object_parts(message)?;
                decode_datum_as(datum, version)
            }
        }
    }

    /// Checks a single-object header against this reader's versions; returns the writer's version and the datum.
    pub fn single_object_parts<'m>(
        &self,
        message: &'m [u8],
    ) -> Result<(&'static SchemaVersion, &'m [u8]), DecodeError> {
        let (fingerprint, datum) = split_single_object(message)?;
        let version = self
            .versions
            .iter()
            .find(|v| v.fingerprint == fingerprint)
            .ok_or_else(|| DecodeError::UnknownFingerprint {
                fingerprint: hex::encode(fingerprint),
                known: self.describe_versions(),
            })?;
        Ok((version, datum))
    }

    /// Decodes a Confluent-framed message; its schema id picks the writer's version.
    pub fn decode_confluent(&self, message: &[u8]) -> Result<SagaEvent, DecodeError> {
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
        let version = self
            .ids
            .version_of(found)
            .ok_or_else(|| DecodeError::UnknownSchemaId {
                found,
                known: self.ids.to_string(),
            })?;
        decode_datum_as(&message[5..], version)
    }
}

impl fmt::Display for KnownSchemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|v| format!("v{}", v.version))
            .collect();
        write!(
            f,
            "versions {}; registry ids {}",
            versions.join(","),
            self.ids
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn a_reader_limited_to_v1_refuses_v2_and_its_ids() {
        let event = crate::testing::sample_event();
        let v2 = codec::encode(&event);
        let v1_only = KnownSchemas::only(&[1]).expect("v1 is known");
        let err = v1_only.decode(&v2).expect_err("v2 is unknown to it");
        assert!(
            matches!(&err, DecodeError::UnknownFingerprint { fingerprint, known }
                if fingerprint == "f5500e0a1fcefdfe" && known == "4ea4c63af7f12518 (v1)"),
            "{err}"
        );
        assert_eq!(KnownSchemas::all().decode(&v2), Ok(event));
        assert!(matches!(
            KnownSchemas::only(&[]),
            Err(KnownSchemasError::Empty)
        ));
        assert!(matches!(
            KnownSchemas::only(&[9]),
            Err(KnownSchemasError::UnknownVersion { version: 9, .. })
        ));
        let ids: RegistryIds = "17=1,18=2".parse().expect("ids");
        assert!(matches!(
            v1_only.clone().with_registry_ids(ids.clone()),
            Err(KnownSchemasError::IdOutsideVersions {
                id: 18,
                version: 2,
                ..
            })
        ));
        let both = KnownSchemas::all().with_registry_ids(ids).expect("ids");
        assert_eq!(both.to_string(), "versions v1,v2; registry ids 17=v1,18=v2");
    }
}
