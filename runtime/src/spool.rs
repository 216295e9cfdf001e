//! The durable local spool: events whose delivery failed, one file each, kept until a replay is acknowledged.
//!
//! File format (`<recordedAt µs, 20 digits>-<eventId>.spool`): `SPL1`, the key length (u32 LE), the Kafka key
//! (the saga id), then the framed message exactly as it was to be sent. Files are written to a `.tmp` name,
//! synced, then renamed, so a crash never leaves a half-written event behind.
//!
//! Nothing walks the spool holding one path per file: [`Spool::count`] streams the directory, and
//! [`Spool::walk`] (what [`Tracker::replay_spool`](crate::Tracker::replay_spool) replays from) yields the files in
//! recorded order a chunk at a time, holding at most [`WALK_CHUNK`] names of 24 bytes each (1.5 MiB), whatever
//! the number of spooled events.

use std::collections::{BinaryHeap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

const MAGIC: &[u8; 4] = b"SPL1";
const EXTENSION: &str = "spool";
/// The extension a spool file that cannot be replayed is renamed to (left for a person to inspect).
const SET_ASIDE: &str = "corrupt";

/// How many spool file names a [`Walk`] holds at once, by default: 65,536 [`SpoolKey`]s of 24 bytes, 1.5 MiB.
///
/// Directory entries come in no useful order, so each chunk costs one read of the whole directory: a walk over
/// `n` files reads the directory `⌊n / chunk⌋ + 1` times. Measured with 1 M spooled files (BENCHMARKS.md, *Memory
/// with Kafka down*): one read 0.6–2.2 s, the whole walk (16 reads) 12–31 s, against 370–810 s for the replay's
/// own work on each file (read, send, delete): 2–5 % of a replay at 1 M files, a share that grows in proportion
/// to the number of files (the walk reads `n² / chunk` names; about 30 % at 10 M), for 1.5 MiB. Set per tracker with
/// [`TrackerBuilder::spool_replay_chunk`](crate::TrackerBuilder::spool_replay_chunk).
pub const WALK_CHUNK: usize = 65_536;

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
    /// The spool directory cannot be listed.
    #[error("spool directory {path} cannot be listed: {source}")]
    List {
        /// The directory.
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

/// The name of one spool file in 24 bytes: its `recordedAt` and event id. Keys order as the file names do
/// (recorded time, then event id), which is the order a replay sends them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpoolKey {
    recorded_at: u64,
    event_id: Uuid,
}

// The walk's bound (`WALK_CHUNK` keys of 24 bytes) holds.
const _: () = assert!(std::mem::size_of::<SpoolKey>() == 24);

/// `<20 digits>-<36-character UUID>.spool`
const NAME_LEN: usize = 20 + 1 + 36 + 1 + EXTENSION.len();

impl SpoolKey {
    /// The key of the event recorded at `recorded_at` (µs since the epoch; a time before the epoch counts as 0).
    pub fn new(recorded_at: i64, event_id: Uuid) -> SpoolKey {
        SpoolKey {
            recorded_at: recorded_at.max(0).unsigned_abs(),
            event_id,
        }
    }

    /// The key of a file name the spool writes; `None` for any other name (a stray or hand-made file).
    pub fn parse(name: &OsStr) -> Option<SpoolKey> {
        let name = name.to_str()?;
        if name.len() != NAME_LEN {
            return None;
        }
        let stem = name.strip_suffix(EXTENSION)?.strip_suffix('.')?;
        let (digits, id) = stem.split_at_checked(20)?;
        let id = id.strip_prefix('-')?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let event_id = Uuid::try_parse(id).ok()?;
        // Only the spelling `append` writes (hyphenated, lower case), so that keys order as the names do.
        let mut spelled = [0u8; uuid::fmt::Hyphenated::LENGTH];
        if event_id.hyphenated().encode_lower(&mut spelled).as_bytes() != id.as_bytes() {
            return None;
        }
        Some(SpoolKey {
            recorded_at: digits.parse().ok()?,
            event_id,
        })
    }

    /// The event's `recordedAt` (µs since the epoch).
    pub fn recorded_at(&self) -> u64 {
        self.recorded_at
    }

    /// The event's id.
    pub fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// The file name, `<recordedAt, 20 digits>-<eventId>.spool`.
    pub fn file_name(&self) -> String {
        format!("{:020}-{}.{EXTENSION}", self.recorded_at, self.event_id)
    }
}

/// A spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    fsync: bool,
    walk_chunk: usize,
    in_flight: Mutex<HashSet<SpoolKey>>,
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
            walk_chunk: WALK_CHUNK,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// How many file names a [`walk`](Spool::walk) holds at once (default [`WALK_CHUNK`]; at least 1): the
    /// walk's memory is `chunk × 24` bytes, and it reads the whole directory once per chunk.
    pub fn with_walk_chunk(mut self, chunk: usize) -> Spool {
        self.walk_chunk = chunk.max(1);
        self
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `key` in this spool.
    pub fn path_of(&self, key: SpoolKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// Writes one event durably.
    pub fn append(
        &self,
        recorded_at: i64,
        event_id: Uuid,
        key: &str,
        payload: &[u8],
    ) -> Result<PathBuf, SpoolError> {
        let name = SpoolKey::new(recorded_at, event_id).file_name();
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

    /// How many events wait in the spool (every `*.spool` file), counted without holding their names: memory
    /// stays flat however many events a long broker outage spooled.
    pub fn count(&self) -> Result<usize, SpoolError> {
        let mut n = 0;
        for entry in self.read_dir()? {
            if is_spool_file(&entry.map_err(|e| self.list_error(e))?.file_name()) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The spool's files in recorded order (oldest first), read a chunk of [`with_walk_chunk`](Spool::with_walk_chunk)
    /// names at a time: memory is bounded by the chunk, not by the number of files.
    ///
    /// Each file is yielded at most once. A file added during the walk is yielded if it sorts after the last
    /// one yielded and is there when the next chunk is read; otherwise (or if a later file was already yielded)
    /// the next walk has it. A `*.spool` file whose name the spool did not write is set aside (renamed to
    /// `*.corrupt`, counted by [`Walk::set_aside`]) by the first read; other files (`*.tmp` being written,
    /// `*.corrupt`, anything else) are ignored.
    pub fn walk(&self) -> Walk<'_> {
        Walk {
            spool: self,
            after: None,
            chunk: Vec::new().into_iter(),
            state: WalkState::Start,
            set_aside: 0,
        }
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

    /// Renames a spool file that cannot be replayed to `*.corrupt`, where no walk sees it again; returns the new
    /// path.
    pub fn set_aside(path: &Path) -> Result<PathBuf, SpoolError> {
        let aside = path.with_extension(SET_ASIDE);
        fs::rename(path, &aside).map_err(|source| SpoolError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(aside)
    }

    /// Marks a file as being re-sent; false if a replay already has it in flight.
    pub(crate) fn claim(&self, key: SpoolKey) -> bool {
        self.in_flight
            .lock()
            .map(|mut set| set.insert(key))
            .unwrap_or(false)
    }

    /// The replay of `key` ended; when `delivered`, its file is removed.
    pub(crate) fn release(&self, key: SpoolKey, delivered: bool) -> Result<(), SpoolError> {
        if let Ok(mut set) = self.in_flight.lock() {
            set.remove(&key);
        }
        if delivered {
            let path = self.path_of(key);
            fs::remove_file(&path).map_err(|source| SpoolError::Io { path, source })?;
        }
        Ok(())
    }

    fn read_dir(&self) -> Result<fs::ReadDir, SpoolError> {
        fs::read_dir(&self.dir).map_err(|e| self.list_error(e))
    }

    fn list_error(&self, source: std::io::Error) -> SpoolError {
        SpoolError::List {
            path: self.dir.clone(),
            source,
        }
    }
}

/// Whether a directory entry is a spool file (`*.spool`; `*.tmp` files being written are not).
fn is_spool_file(name: &OsStr) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|ext| ext == EXTENSION)
}

/// The spool's files in recorded order, a chunk at a time: see [`Spool::walk`].
#[derive(Debug)]
pub struct Walk<'a> {
    spool: &'a Spool,
    /// The last key yielded: the next chunk holds the smallest keys above it.
    after: Option<SpoolKey>,
    chunk: std::vec::IntoIter<SpoolKey>,
    state: WalkState,
    set_aside: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkState {
    /// No chunk read yet.
    Start,
    /// The last chunk read was full: more files may sort after it.
    More,
    /// The last chunk read held every file left (or reading failed): the walk ends with it.
    Last,
}

impl Walk<'_> {
    /// `*.spool` files with a name the spool does not write, renamed to `*.corrupt` so far.
    pub fn set_aside(&self) -> usize {
        self.set_aside
    }

    /// Reads the directory once, keeping the smallest `walk_chunk` keys above `after` in a max-heap.
    fn read_chunk(&mut self) -> Result<(), SpoolError> {
        let first = self.state == WalkState::Start;
        self.state = WalkState::Last;
        let size = self.spool.walk_chunk;
        // Allocated once at its bound (pages are touched only as keys arrive).
        let mut heap = BinaryHeap::with_capacity(size);
        for entry in self.spool.read_dir()? {
            let entry = entry.map_err(|e| self.spool.list_error(e))?;
            let name = entry.file_name();
            if !is_spool_file(&name) {
                continue;
            }
            let Some(key) = SpoolKey::parse(&name) else {
                if first {
                    self.set_aside_misnamed(&entry.path());
                }
                continue;
            };
            if self.after.is_some_and(|after| key <= after) {
                continue;
            }
            if heap.len() < size {
                heap.push(key);
            } else if let Some(mut largest) = heap.peek_mut()
                && key < *largest
            {
                *largest = key;
            }
        }
        if heap.len() == size {
            self.state = WalkState::More;
        }
        self.chunk = heap.into_sorted_vec().into_iter();
        Ok(())
    }

    fn set_aside_misnamed(&mut self, path: &Path) {
        match Spool::set_aside(path) {
            Ok(aside) => {
                tracing::error!(path = %path.display(), aside = %aside.display(), "saga-tracker: a *.spool file the spool did not name cannot be replayed in order; renamed to *.corrupt");
                self.set_aside += 1;
            }
            // Gone already (another replay set it aside): nothing to do.
            Err(SpoolError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            }
            Err(err) => {
                tracing::error!(%err, "saga-tracker: a *.spool file the spool did not name cannot be replayed and could not be set aside");
            }
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<SpoolKey, SpoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(key) = self.chunk.next() {
                self.after = Some(key);
                return Some(Ok(key));
            }
            if self.state == WalkState::Last {
                return None;
            }
            if let Err(err) = self.read_chunk() {
                return Some(Err(err));
            }
        }
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
        let walked: Vec<_> = spool
            .walk()
            .map(|key| spool.path_of(key.expect("walk")))
            .collect();
        assert_eq!(walked, vec![b.clone(), a]);
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

    /// `n` events with times from a few values (ties ordered by event id), appended in no particular order.
    fn spool_of(dir: &Path, chunk: usize, n: u64) -> (Spool, Vec<SpoolKey>) {
        let spool = Spool::open(dir, false)
            .expect("open")
            .with_walk_chunk(chunk);
        let mut keys = Vec::new();
        for i in 0..n {
            let at = i64::try_from((i * 7) % 5).expect("small") * 1_000;
            let id = Uuid::now_v7();
            spool.append(at, id, "saga", b"x").expect("append");
            keys.push(SpoolKey::new(at, id));
        }
        keys.sort();
        (spool, keys)
    }

    fn walk_all(spool: &Spool) -> Vec<SpoolKey> {
        spool.walk().map(|key| key.expect("walk")).collect()
    }

    #[test]
    fn keys_order_as_file_names_and_round_trip() {
        let mut keys: Vec<_> = (0..200)
            .map(|i| SpoolKey::new(i % 3 * 99_999_999_999 - 1, Uuid::now_v7()))
            .collect();
        let mut names: Vec<_> = keys.iter().map(SpoolKey::file_name).collect();
        keys.sort();
        names.sort();
        let parsed: Vec<_> = names
            .iter()
            .map(|n| SpoolKey::parse(OsStr::new(n)).expect("a spool name"))
            .collect();
        assert_eq!(parsed, keys);
        let id = Uuid::now_v7();
        let name = SpoolKey::new(i64::MAX, id).file_name();
        assert_eq!(name.len(), NAME_LEN);
        assert_eq!(
            SpoolKey::parse(OsStr::new(&name)).map(|k| (k.recorded_at(), k.event_id())),
            Some((i64::MAX.unsigned_abs(), id))
        );
    }

    #[test]
    fn names_the_spool_does_not_write_have_no_key() {
        let id = Uuid::now_v7();
        let upper = format!("00000000000000000001-{}.spool", id.hyphenated()).to_uppercase();
        for name in [
            "00000000000000000001-x.spool".to_owned(),
            format!("0000000000000000001-{id}.spool"),
            format!("0000000000000000000a-{id}.spool"),
            format!("00000000000000000001_{id}.spool"),
            format!("00000000000000000001-{}.spool", id.simple()),
            format!("00000000000000000001-{id}.spool.tmp"),
            format!(".00000000000000000001-{id}.spool.tmp"),
            format!("99999999999999999999-{id}.spool"),
            upper.replace(".SPOOL", ".spool"),
            format!("00000000000000000001-{id}.corrupt"),
        ] {
            assert_eq!(SpoolKey::parse(OsStr::new(&name)), None, "{name}");
        }
    }

    #[test]
    fn a_walk_yields_every_file_once_in_order_across_chunk_boundaries() {
        for chunk in [1, 2, 3, 7, 40, 41, 1_000] {
            let dir = tempfile::tempdir().expect("tempdir");
            let (spool, keys) = spool_of(dir.path(), chunk, 40);
            assert_eq!(walk_all(&spool), keys, "chunk {chunk}");
        }
    }

    #[test]
    fn an_empty_spool_walks_to_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), false).expect("open");
        assert!(walk_all(&spool).is_empty());
    }

    #[test]
    fn files_added_or_removed_during_a_walk_are_never_yielded_twice_or_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, keys) = spool_of(dir.path(), 3, 12);
        let mut seen = Vec::new();
        let mut added = Vec::new();
        for key in spool.walk() {
            let key = key.expect("walk");
            // Delivered: removed, as a replay's acknowledgement does.
            fs::remove_file(spool.path_of(key)).expect("remove");
            seen.push(key);
            if seen.len() == 4 {
                // One file behind the walk's position and one ahead of it, written mid-walk.
                for at in [0, 1_000_000] {
                    let id = Uuid::now_v7();
                    spool.append(at, id, "saga", b"late").expect("append");
                    added.push(SpoolKey::new(at, id));
                }
            }
        }
        let (behind, ahead) = (added[0], added[1]);
        let mut expected = keys.clone();
        expected.push(ahead);
        assert_eq!(
            seen, expected,
            "in order, each once, the file ahead included"
        );
        // The file behind the walk's position waits for the next walk.
        assert_eq!(walk_all(&spool), vec![behind]);
    }

    #[test]
    fn tmp_and_stray_files_are_ignored_and_misnamed_spool_files_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, keys) = spool_of(dir.path(), 2, 5);
        let id = Uuid::now_v7();
        let tmp = dir
            .path()
            .join(format!(".00000000000000000001-{id}.spool.tmp"));
        let others = [
            tmp.clone(),
            dir.path().join("notes.txt"),
            dir.path()
                .join(format!("00000000000000000001-{id}.corrupt")),
            dir.path().join("README"),
        ];
        for path in &others {
            fs::write(path, b"not an event").expect("write");
        }
        fs::write(dir.path().join("hand-made.spool"), b"SPL1").expect("write");
        assert_eq!(spool.count().expect("count"), 5 + 1);
        let mut walk = spool.walk();
        let walked: Vec<_> = walk.by_ref().map(|key| key.expect("walk")).collect();
        assert_eq!(walked, keys);
        assert_eq!(walk.set_aside(), 1, "hand-made.spool");
        assert!(dir.path().join("hand-made.corrupt").exists());
        for path in &others {
            assert!(path.exists(), "{} left alone", path.display());
        }
        assert_eq!(spool.count().expect("count"), 5);
    }

    #[test]
    fn a_walk_of_a_missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path().join("spool"), false).expect("open");
        fs::remove_dir(spool.dir()).expect("remove");
        let mut walk = spool.walk();
        let err = walk.next().expect("an item").expect_err("no directory");
        assert!(err.to_string().contains("cannot be listed"), "{err}");
        assert!(walk.next().is_none(), "the walk ends after the error");
        assert!(matches!(spool.count(), Err(SpoolError::List { .. })));
    }
}
