//! Confluent framing carries a schema-registry id, not a fingerprint: the configured map from id to version.

use std::fmt;
use std::str::FromStr;

use crate::schema::{self, SchemaVersion};

/// Schema-registry ids and the schema versions they stand for, e.g. `7=1,12=2`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryIds {
    ids: Vec<(u32, &'static SchemaVersion)>,
}

/// An id map that names a version this crate does not know, or is not `ID=VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryIdsError {
    /// Not `ID=VERSION`.
    #[error("`{0}` is not ID=VERSION (e.g. 12=2)")]
    Syntax(String),
    /// The version is not in `schemas/history/`.
    #[error(
        "schema registry id {id} maps to v{version}, which this build does not know (known: {known})"
    )]
    UnknownVersion {
        /// The id.
        id: u32,
        /// The version asked for.
        version: u32,
        /// The known versions.
        known: String,
    },
    /// One id given twice with different versions.
    #[error("schema registry id {0} is mapped twice")]
    Duplicate(u32),
}

impl RegistryIds {
    /// No ids: Confluent framing is not read.
    pub fn new() -> Self {
        Self::default()
    }

    /// One id standing for the current version.
    pub fn current(id: u32) -> Self {
        let current = schema::VERSIONS.last().map(|v| vec![(id, v)]);
        RegistryIds {
            ids: current.unwrap_or_default(),
        }
    }

    /// Adds `id` → `version`.
    pub fn with(mut self, id: u32, version: u32) -> Result<Self, RegistryIdsError> {
        let known = schema::version(version).ok_or_else(|| RegistryIdsError::UnknownVersion {
            id,
            version,
            known: schema::known_fingerprints(),
        })?;
        if let Some((_, v)) = self.ids.iter().find(|(i, _)| *i == id) {
            if v.version == version {
                return Ok(self);
            }
            return Err(RegistryIdsError::Duplicate(id));
        }
        self.ids.push((id, known));
        Ok(self)
    }

    /// The version `id` stands for.
    pub fn version_of(&self, id: u32) -> Option<&'static SchemaVersion> {
        self.ids.iter().find(|(i, _)| *i == id).map(|(_, v)| *v)
    }

    /// True when no id is configured.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Each id and its version, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &'static SchemaVersion)> + '_ {
        self.ids.iter().copied()
    }

    /// Adds every pair of `other` (same rules as [`RegistryIds::with`]).
    pub fn merge(mut self, other: &RegistryIds) -> Result<Self, RegistryIdsError> {
        for (id, v) in other.iter() {
            self = self.with(id, v.version)?;
        }
        Ok(self)
    }
}

impl fmt::Display for RegistryIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ids.is_empty() {
            return f.write_str("none");
        }
        for (n, (id, v)) in self.ids.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{id}=v{}", v.version)?;
        }
        Ok(())
    }
}

impl FromStr for RegistryIds {
    type Err = RegistryIdsError;

    /// `ID=VERSION` pairs separated by commas (`v` before the version is optional): `7=1,12=v2`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut ids = RegistryIds::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let syntax = || RegistryIdsError::Syntax(pair.to_owned());
            let (id, version) = pair.split_once('=').ok_or_else(syntax)?;
            let id: u32 = id.trim().parse().map_err(|_| syntax())?;
            let version = version.trim();
            let version: u32 = version
                .strip_prefix(['v', 'V'])
                .unwrap_or(version)
                .parse()
                .map_err(|_| syntax())?;
            ids = ids.with(id, version)?;
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_rejects_unknown_versions() {
        let ids: RegistryIds = "7=1, 12=v2".parse().expect("valid");
        assert_eq!(ids.version_of(7).map(|v| v.version), Some(1));
        assert_eq!(ids.version_of(12).map(|v| v.version), Some(2));
        assert_eq!(ids.version_of(8), None);
        assert_eq!(ids.to_string(), "7=v1,12=v2");
        assert!(matches!(
            "7=9".parse::<RegistryIds>(),
            Err(RegistryIdsError::UnknownVersion { version: 9, .. })
        ));
        assert!(matches!(
            "7".parse::<RegistryIds>(),
            Err(RegistryIdsError::Syntax(_))
        ));
        assert!(matches!(
            "7=1,7=2".parse::<RegistryIds>(),
            Err(RegistryIdsError::Duplicate(7))
        ));
    }
}
