//! Where encoded events go. Every transport sits behind [`Sink`], so an outbox transport can be added
//! without touching callers (R11).
//!
//! A sink receives [`Envelope`]s from the tracker's worker thread and must report each one's outcome exactly
//! once through its [`Delivery`]: [`Delivery::delivered`] when the transport acknowledged it, or
//! [`Delivery::failed`] otherwise. Failed events are counted and spooled by the tracker; a sink never drops one.

mod json_lines;
mod kafka;
mod memory;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use json_lines::JsonLinesSink;
pub use kafka::{DEFAULT_TOPIC, KafkaSink, KafkaSinkBuilder, PRODUCER_DEFAULTS};
pub use memory::{MemorySink, RecordedMessage};
use uuid::Uuid;

use crate::spool::{Spool, SpoolKey};
use crate::stats::Counters;

/// A transport for encoded events.
pub trait Sink: Send + Sync + 'static {
    /// Hands one event to the transport. Must not wait on the network; report the outcome through `delivery`.
    fn send(&self, envelope: Envelope<'_>, delivery: Delivery);

    /// Waits until every event handed to [`Sink::send`] has an outcome, or `timeout` passes.
    fn flush(&self, timeout: Duration) -> Result<(), SinkError>;

    /// A short human description, e.g. `kafka topic saga.tracker at 127.0.0.1:9092`.
    fn describe(&self) -> String;
}

/// A shared sink is a sink (keep a handle to inspect it while the tracker owns a clone).
impl<S: Sink> Sink for Arc<S> {
    fn send(&self, envelope: Envelope<'_>, delivery: Delivery) {
        (**self).send(envelope, delivery);
    }
    fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        (**self).flush(timeout)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// One encoded event on its way to a transport, borrowed from the tracker's buffers: a sink copies what it
/// keeps (librdkafka copies key and payload into its own queue anyway), so the worker reuses one buffer.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The message key: the saga id, so one saga stays on one partition.
    pub key: &'a str,
    /// The framed Avro message.
    pub payload: &'a [u8],
    /// The event's id.
    pub event_id: Uuid,
    /// The event's `recordedAt` (µs).
    pub recorded_at: i64,
    /// The W3C `traceparent` of the span that recorded it, if a trace was active.
    pub traceparent: Option<&'a str>,
}

/// Errors of sinks.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// No bootstrap servers were given.
    #[error("no Kafka bootstrap servers given (expected host:port[,host:port...])")]
    NoBrokers,
    /// The topic name is empty.
    #[error("the topic name is empty")]
    EmptyTopic,
    /// librdkafka rejected a configuration property.
    #[error("invalid Kafka producer configuration: {0}")]
    Config(String),
    /// The brokers could not be reached within the connectivity check's timeout.
    #[error("Kafka brokers {brokers} unreachable within {timeout:?}: {reason}")]
    Unreachable {
        /// The bootstrap servers.
        brokers: String,
        /// The timeout used.
        timeout: Duration,
        /// What librdkafka said.
        reason: String,
    },
    /// Flushing did not finish in time; the events left are reported as failed (and spooled) when they time out.
    #[error("flush timed out after {0:?} with events still in flight")]
    FlushTimeout(Duration),
    /// Opening or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Shared by all deliveries of one tracker: counters, spool and the last transport error.
#[derive(Debug)]
pub(crate) struct Reporter {
    pub counters: Counters,
    pub spool: Option<Spool>,
    pub last_error: Mutex<Option<String>>,
}

impl Reporter {
    pub(crate) fn note_error(&self, error: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }

    /// A live event was acknowledged.
    #[inline]
    pub(crate) fn live_delivered(&self) {
        Counters::bump(&self.counters.delivered);
    }

    /// A live event failed: counted and kept in the spool. Its id and time are read back from the payload.
    pub(crate) fn live_failed(&self, key: &str, payload: &[u8], reason: &str) {
        let (event_id, recorded_at) = identity(payload);
        self.spool_failed(event_id, recorded_at, key, payload, reason);
        self.note_error(format!("delivery of {event_id} failed: {reason}"));
    }

    /// Counts a failure of a live event and keeps it in the spool.
    pub(crate) fn spool_failed(
        &self,
        event_id: Uuid,
        recorded_at: i64,
        key: &str,
        payload: &[u8],
        reason: &str,
    ) {
        Counters::bump(&self.counters.failed);
        match &self.spool {
            Some(spool) => match spool.append(recorded_at, event_id, key, payload) {
                Ok(_) => Counters::bump(&self.counters.spooled),
                Err(err) => {
                    Counters::bump(&self.counters.lost);
                    tracing::error!(%event_id, %err, %reason, "saga-tracker: delivery failed and the event could not be spooled: it is lost");
                }
            },
            None => {
                Counters::bump(&self.counters.lost);
                tracing::error!(%event_id, %reason, "saga-tracker: delivery failed and no spool is configured: the event is lost");
            }
        }
    }
}

/// The outcome slot of one envelope. Report exactly once; the tracker counts and spools.
#[derive(Debug)]
pub struct Delivery {
    target: Target,
}

/// Receives the outcome of a [`Delivery::callback`]: `Ok` when acknowledged, else the transport's reason.
pub type DeliveryCallback = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// Whose outcome a [`Delivery`] reports.
enum Target {
    /// An event recorded now. Its id and time, needed only if it fails, are read back from its payload.
    Live(Arc<Reporter>),
    /// An event re-sent from the spool.
    Replay {
        reporter: Arc<Reporter>,
        key: SpoolKey,
    },
    /// An event sent outside any tracker (the outbox relay): the outcome goes to a callback, nothing is spooled.
    Callback(DeliveryCallback),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Live(reporter) => f.debug_tuple("Live").field(reporter).finish(),
            Target::Replay { key, .. } => f
                .debug_struct("Replay")
                .field("key", key)
                .finish_non_exhaustive(),
            Target::Callback(_) => f.write_str("Callback"),
        }
    }
}

impl Delivery {
    /// The delivery of a live event of the tracker that owns `reporter` (no allocation).
    #[inline]
    pub(crate) fn live(reporter: &Arc<Reporter>) -> Self {
        Delivery {
            target: Target::Live(reporter.clone()),
        }
    }

    /// The delivery of an event replayed from the spool file of `key`.
    pub(crate) fn replay(reporter: Arc<Reporter>, key: SpoolKey) -> Self {
        Delivery {
            target: Target::Replay { reporter, key },
        }
    }

    /// A delivery whose outcome is handed to `callback` (once, on a transport thread: keep it short). Nothing is
    /// counted or spooled: the caller keeps the event until it sees `Ok` (the outbox relay marks its row
    /// published then).
    pub fn callback(callback: impl FnOnce(Result<(), &str>) + Send + 'static) -> Self {
        Delivery {
            target: Target::Callback(Box::new(callback)),
        }
    }

    /// The reporter of a live event (`None` for a replay or a callback).
    pub(crate) fn live_reporter(&self) -> Option<&Arc<Reporter>> {
        match &self.target {
            Target::Live(reporter) => Some(reporter),
            Target::Replay { .. } | Target::Callback(_) => None,
        }
    }

    /// The transport acknowledged the event.
    pub fn delivered(self) {
        match self.target {
            Target::Callback(callback) => callback(Ok(())),
            Target::Live(reporter) => reporter.live_delivered(),
            Target::Replay { reporter, key } => {
                let counters = &reporter.counters;
                Counters::bump(&counters.delivered);
                if let Some(spool) = &reporter.spool {
                    match spool.release(key, true) {
                        Ok(()) => Counters::bump(&counters.replayed),
                        Err(err) => {
                            tracing::warn!(%err, "saga-tracker: replayed event delivered but its spool file could not be removed")
                        }
                    }
                }
            }
        }
    }

    /// The transport gave up on the event; `key` and `payload` are what was sent.
    pub fn failed(self, key: &str, payload: &[u8], reason: &str) {
        match self.target {
            Target::Callback(callback) => callback(Err(reason)),
            Target::Live(reporter) => reporter.live_failed(key, payload, reason),
            Target::Replay { reporter, key } => {
                Counters::bump(&reporter.counters.failed);
                if let Some(spool) = &reporter.spool {
                    let _ = spool.release(key, false);
                }
                let event_id = key.event_id();
                reporter.note_error(format!("delivery of {event_id} failed: {reason}"));
            }
        }
    }
}

/// The event id and `recordedAt` of an encoded message (nil and 0 if it cannot be decoded: it is kept as-is).
pub(crate) fn identity(payload: &[u8]) -> (Uuid, i64) {
    crate::codec::decode_either_framing(payload)
        .map(|e| (e.event_id, e.recorded_at))
        .unwrap_or((Uuid::nil(), 0))
}
