//! The durable local spool: events whose delivery failed, one file each, kept until a replay is acknowledged.
//!
//! File format (`<recordedAt µs, 20 digits>-<eventId>.spool`): `SPL1`, the key length (u32 LE), the Kafka key
//! (the saga id), then the framed message exactly as it was to be sent. Files are written to a `.tmp` name,
//! synced, then renamed, so a crash never leaves a half-written event behind.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

const MAGIC: &[u8; 4] = b"SPL1";
const EXTENSION: &str = "spool";

/// A spool failure.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool directory cannot be created or written.
    #[error("spool directory {path} is not writable: {source}")]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading or writing one spool file failed.
    #[error("spool file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A spool file is not in the spool format.
    #[error("spool file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

/// One spooled event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledEvent {
    /// The spool file.
    pub path: PathBuf,
    /// The Kafka key (saga id).
    pub key: String,
    /// The framed message.
    pub payload: Vec<u8>,
}

/// A spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    fsync: bool,
    in_flight: Mutex<HashSet<PathBuf>>,
}

impl Spool {
    /// Opens (creating it if needed) a spool directory and checks that it is writable.
    pub fn open(dir: impl Into<PathBuf>, fsync: bool) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        let not_writable = |source| SpoolError::NotWritable {
            path: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(not_writable)?;
        let probe = dir.join(format!(".probe-{}", Uuid::now_v7()));
        fs::write(&probe, b"probe").map_err(not_writable)?;
        fs::remove_file(&probe).map_err(not_writable)?;
        Ok(Spool {
            dir,
            fsync,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one event durably.
    pub fn append(
        &self,
        recorded_at: i64,
        event_id: Uuid,
        key: &str,
        payload: &[u8],
    ) -> Result<PathBuf, SpoolError> {
        let name = format!("{:020}-{event_id}.{EXTENSION}", recorded_at.max(0));
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        let mut file = fs::File::create(&tmp).map_err(io)?;
        let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        file.write_all(MAGIC).map_err(io)?;
        file.write_all(&key_len.to_le_bytes()).map_err(io)?;
        file.write_all(&key.as_bytes()[..key_len as usize])
            .map_err(io)?;
        file.write_all(payload).map_err(io)?;
        if self.fsync {
            file.sync_all().map_err(io)?;
        }
        drop(file);
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }

    /// How many events wait in the spool, counted without holding their paths (memory stays flat however many
    /// events a long broker outage spooled).
    pub fn count(&self) -> Result<usize, SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut n = 0;
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            if entry
                .map_err(io)?
                .path()
                .extension()
                .is_some_and(|ext| ext == EXTENSION)
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Spool files in the order they were recorded (oldest first).
    pub fn list(&self) -> Result<Vec<PathBuf>, SpoolError> {
        let io = |source| SpoolError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|ext| ext == EXTENSION) {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// Reads one spool file.
    pub fn read(path: &Path) -> Result<SpooledEvent, SpoolError> {
        let bytes = fs::read(path).map_err(|source| SpoolError::Io {
            path: path.to_owned(),
            source,
        })?;
        let corrupt = |reason| SpoolError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(corrupt("missing SPL1 header"));
        }
        let key_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let key_end = 8usize
            .checked_add(key_len)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| corrupt("key length beyond file"))?;
        let key = std::str::from_utf8(&bytes[8..key_end])
            .map_err(|_| corrupt("key is not UTF-8"))?
            .to_owned();
        Ok(SpooledEvent {
            path: path.to_owned(),
            key,
            payload: bytes[key_end..].to_vec(),
        })
    }

    /// Marks a file as being re-sent; false if a replay already has it in flight.
    pub(crate) fn claim(&self, path: &Path) -> bool {
        self.in_flight
            .lock()
            .map(|mut set| set.insert(path.to_owned()))
            .unwrap_or(false)
    }

    /// The replay of `path` ended; when `delivered`, the file is removed.
    pub(crate) fn release(&self, path: &Path, delivered: bool) -> Result<(), SpoolError> {
        if let Ok(mut set) = self.in_flight.lock() {
            set.remove(path);
        }
        if delivered {
            fs::remove_file(path).map_err(|source| SpoolError::Io {
                path: path.to_owned(),
                source,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_events_read_back_in_record_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), true).expect("open");
        let a = spool
            .append(20, Uuid::now_v7(), "saga-b", b"second")
            .expect("append");
        let b = spool
            .append(10, Uuid::now_v7(), "saga-a", b"first")
            .expect("append");
        assert_eq!(spool.list().expect("list"), vec![b.clone(), a]);
        assert_eq!(spool.count().expect("count"), 2);
        let event = Spool::read(&b).expect("read");
        assert_eq!(
            (event.key.as_str(), event.payload.as_slice()),
            ("saga-a", &b"first"[..])
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.spool");
        fs::write(&path, b"SPL1\xff\xff\xff\xffab").expect("write");
        assert!(matches!(
            Spool::read(&path),
            Err(SpoolError::Corrupt { .. })
        ));
        fs::write(&path, b"nope").expect("write");
        assert!(matches!(
            Spool::read(&path),
            Err(SpoolError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_unwritable_directory_is_reported_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        fs::write(&file, b"").expect("write");
        let err = Spool::open(file.join("spool"), true).expect_err("must fail");
        assert!(err.to_string().contains("not writable"), "{err}");
    }
}
