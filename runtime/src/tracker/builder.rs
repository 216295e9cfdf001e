//! [`TrackerBuilder`]: service name, sink, spool and queue options.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::lanes::Lanes;
use super::{Inner, Tracker, worker};

/// Slots of the shared queue (flush requests, events of threads without a lane).
const SHARED_QUEUE: usize = 1_024;
use crate::codec::Framing;
use crate::sink::{Reporter, Sink};
use crate::spool::{Spool, SpoolError, WALK_CHUNK};
use crate::stats::Counters;

/// The environment variable that sets the default spool directory.
pub const SPOOL_DIR_ENV: &str = "SAGA_TRACKER_SPOOL_DIR";

/// Why a [`Tracker`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The service name is empty or blank.
    #[error("the service name is empty: set it with Tracker::builder().service(\"order-service\")")]
    EmptyService,
    /// No sink was given.
    #[error(
        "no sink configured: use .sink(KafkaSink::builder(brokers).build()?) (or MemorySink in tests)"
    )]
    NoSink,
    /// The queue capacity is zero.
    #[error("queue capacity must be at least 1")]
    ZeroQueueCapacity,
    /// The spool directory is not usable.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The service name is over its bound ([`bounds::SERVICE`](crate::bounds::SERVICE)).
    #[error("the service name is too long: {0}")]
    ServiceTooLong(crate::bounds::TooLarge),
    /// The worker thread could not be started.
    #[error("could not start the saga-tracker worker thread: {0}")]
    Worker(std::io::Error),
}

enum SpoolChoice {
    Default,
    Dir(PathBuf),
    Off,
}

/// Builds a [`Tracker`].
///
/// ```
/// use saga_tracker::{MemorySink, Tracker};
/// let dir = tempfile::tempdir().unwrap();
/// let tracker = Tracker::builder()
///     .service("order-service")
///     .sink(MemorySink::new())
///     .spool_dir(dir.path())
///     .queue_capacity(10_000)
///     .build()
///     .unwrap();
/// assert_eq!(tracker.service(), "order-service");
/// ```
pub struct TrackerBuilder {
    service: String,
    sink: Option<Arc<dyn Sink>>,
    spool: SpoolChoice,
    spool_fsync: bool,
    spool_replay_chunk: usize,
    queue_capacity: usize,
    framing: Framing,
    shutdown_timeout: Duration,
}

impl Default for TrackerBuilder {
    fn default() -> Self {
        TrackerBuilder {
            service: String::new(),
            sink: None,
            spool: SpoolChoice::Default,
            spool_fsync: true,
            spool_replay_chunk: WALK_CHUNK,
            queue_capacity: 65_536,
            framing: Framing::SingleObject,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for TrackerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerBuilder")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl TrackerBuilder {
    /// The service name written into every event (required).
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = name.into();
        self
    }

    /// The transport (required).
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// The spool directory for events whose delivery failed. Default: `$SAGA_TRACKER_SPOOL_DIR/<service>`,
    /// else `./saga-tracker-spool/<service>`. Created if missing; must be writable.
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool = SpoolChoice::Dir(dir.into());
        self
    }

    /// No spool: failed events are counted as `lost`. Only for tests with sinks that cannot fail.
    pub fn without_spool(mut self) -> Self {
        self.spool = SpoolChoice::Off;
        self
    }

    /// Whether each spooled event is fsync'ed before it counts as spooled (default true).
    pub fn spool_fsync(mut self, fsync: bool) -> Self {
        self.spool_fsync = fsync;
        self
    }

    /// How many spool file names [`Tracker::replay_spool`](crate::Tracker::replay_spool) holds in memory at once
    /// (default [`WALK_CHUNK`], 65,536 names of 24 bytes: 1.5 MiB; at least 1). A replay reads the whole spool
    /// directory once per chunk, so a smaller chunk trades memory for directory reads.
    pub fn spool_replay_chunk(mut self, names: usize) -> Self {
        self.spool_replay_chunk = names;
        self
    }

    /// How many transitions may wait for the worker (default 65 536), across all threads' lanes (each thread that
    /// records also holds one segment of up to 512 events, granted even past this capacity). When full, `record`
    /// spools instead of waiting.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Message framing (default Avro single-object; Confluent when a schema-registry id is configured).
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Use Confluent Schema Registry framing with this schema id.
    pub fn schema_registry_id(self, schema_id: u32) -> Self {
        self.framing(Framing::Confluent { schema_id })
    }

    /// How long dropping the last clone waits for in-flight events (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Checks the options, opens the spool and starts the worker thread.
    pub fn build(self) -> Result<Tracker, BuildError> {
        let service = self.service.trim();
        if service.is_empty() {
            return Err(BuildError::EmptyService);
        }
        crate::bounds::check_len(crate::bounds::Field::Service, service.len())
            .map_err(BuildError::ServiceTooLong)?;
        let sink = self.sink.ok_or(BuildError::NoSink)?;
        if self.queue_capacity == 0 {
            return Err(BuildError::ZeroQueueCapacity);
        }
        let spool = match self.spool {
            SpoolChoice::Off => None,
            SpoolChoice::Dir(dir) => Some(Spool::open(dir, self.spool_fsync)?),
            SpoolChoice::Default => {
                let base = std::env::var_os(SPOOL_DIR_ENV)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("saga-tracker-spool"));
                Some(Spool::open(base.join(service), self.spool_fsync)?)
            }
        }
        .map(|spool| spool.with_walk_chunk(self.spool_replay_chunk));
        let service: Arc<str> = Arc::from(service);
        let reporter = Arc::new(Reporter {
            counters: Counters::default(),
            spool,
            last_error: Mutex::new(None),
        });
        // Calibrates the event clock here, not on a caller's first step.
        let _ = super::clock::Stamp::now();
        // The shared queue carries flushes and the rare event of a thread without a lane; events go to lanes.
        let (tx, rx) = std::sync::mpsc::sync_channel(self.queue_capacity.min(SHARED_QUEUE));
        let wakeup = Arc::new(worker::Wakeup::new());
        let lanes = Arc::new(Lanes::new(self.queue_capacity, wakeup.clone()));
        let worker = {
            let worker = worker::Worker {
                rx,
                lanes: lanes.clone(),
                wakeup: wakeup.clone(),
                service: service.clone(),
                framing: self.framing,
                sink: sink.clone(),
                reporter: reporter.clone(),
            };
            std::thread::Builder::new()
                .name(format!("saga-tracker-{service}"))
                .spawn(move || worker.run())
                .map_err(BuildError::Worker)?
        };
        wakeup.set_thread(worker.thread().clone());
        Ok(Tracker {
            inner: Arc::new(Inner {
                service,
                lanes,
                tx: Some(tx),
                wakeup,
                worker: Some(worker),
                sink,
                reporter,
                framing: self.framing,
                shutdown_timeout: self.shutdown_timeout,
            }),
        })
    }
}
