//! The Kafka sink: rdkafka with idempotence, `acks=all`, key = saga id, Java-compatible partitioning.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::{Delivery, Envelope, Reporter, Sink, SinkError};

/// The topic every service publishes to.
pub const DEFAULT_TOPIC: &str = "saga.tracker";

/// Producer properties set unless the caller overrides them (see librdkafka's CONFIGURATION.md).
pub const PRODUCER_DEFAULTS: [(&str, &str); 5] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    // The Java client's default partitioner: a saga lands on the same partition from Java and Rust producers.
    ("partitioner", "murmur2_random"),
    ("linger.ms", "5"),
    ("compression.type", "lz4"),
];

/// Builds a [`KafkaSink`].
#[derive(Debug, Clone)]
pub struct KafkaSinkBuilder {
    brokers: String,
    topic: String,
    properties: BTreeMap<String, String>,
    queue_full_timeout: Duration,
    connectivity_check: Option<Duration>,
    background_priority: bool,
}

impl KafkaSinkBuilder {
    /// The topic (default `saga.tracker`).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// Sets any librdkafka producer property, e.g. `set("linger.ms", "20")`. Unknown names fail [`build`](Self::build).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// How long a message may wait for delivery before it is reported failed and spooled
    /// (`message.timeout.ms`, librdkafka's default is 5 minutes).
    pub fn message_timeout(self, timeout: Duration) -> Self {
        self.set("message.timeout.ms", timeout.as_millis().to_string())
    }

    /// How long to keep retrying while librdkafka's local queue is full before the event is spooled
    /// (default 1 s). This wait happens on the tracker's worker thread, never on the caller's.
    pub fn queue_full_timeout(mut self, timeout: Duration) -> Self {
        self.queue_full_timeout = timeout;
        self
    }

    /// Fetch the topic's metadata when building, and fail with [`SinkError::Unreachable`] if the brokers do not
    /// answer within `timeout`. Off by default: a service may start while Kafka is down (events are spooled).
    pub fn check_connectivity(mut self, timeout: Duration) -> Self {
        self.connectivity_check = Some(timeout);
        self
    }

    /// Whether librdkafka's threads run at background priority (default `true`): on Linux they start at nice 10,
    /// like the tracker's worker, so a handler's thread wins a contended core and delivery uses the idle time.
    /// Set `false` for normal priority, e.g. where a service keeps every core busy for long stretches and its
    /// events must not wait for idle time.
    pub fn background_priority(mut self, on: bool) -> Self {
        self.background_priority = on;
        self
    }

    /// Creates the producer.
    pub fn build(self) -> Result<KafkaSink, SinkError> {
        if self.brokers.trim().is_empty() {
            return Err(SinkError::NoBrokers);
        }
        if self.topic.trim().is_empty() {
            return Err(SinkError::EmptyTopic);
        }
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in PRODUCER_DEFAULTS {
            config.set(k, v);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config.set_log_level(RDKafkaLogLevel::Warning);
        let create = || {
            config
                .create_with_context::<_, ThreadedProducer<SinkContext>>(SinkContext::default())
                .map_err(|e| SinkError::Config(e.to_string()))
        };
        // librdkafka's threads (and the producer's polling thread) inherit the priority of the thread that
        // creates the client.
        let producer = if self.background_priority {
            crate::priority::create_at_background_priority(create)?
        } else {
            create()?
        };
        if let Some(timeout) = self.connectivity_check {
            producer
                .client()
                .fetch_metadata(Some(&self.topic), timeout)
                .map_err(|e| SinkError::Unreachable {
                    brokers: self.brokers.clone(),
                    timeout,
                    reason: e.to_string(),
                })?;
        }
        Ok(KafkaSink {
            producer,
            topic: self.topic,
            brokers: self.brokers,
            queue_full_timeout: self.queue_full_timeout,
        })
    }
}

/// Publishes events to Kafka (topic `saga.tracker` by default).
///
/// ```no_run
/// use saga_tracker::{KafkaSink, Tracker};
/// let sink = KafkaSink::builder("kafka-1:9092,kafka-2:9092").set("linger.ms", "10").build()?;
/// let tracker = Tracker::builder().service("order-service").sink(sink).spool_dir("/var/lib/order/spool").build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KafkaSink {
    producer: ThreadedProducer<SinkContext>,
    topic: String,
    brokers: String,
    queue_full_timeout: Duration,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.topic)
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A builder for the given bootstrap servers (`host:port[,host:port...]`).
    pub fn builder(brokers: impl Into<String>) -> KafkaSinkBuilder {
        KafkaSinkBuilder {
            brokers: brokers.into(),
            topic: DEFAULT_TOPIC.to_owned(),
            properties: BTreeMap::new(),
            queue_full_timeout: Duration::from_secs(1),
            connectivity_check: None,
            background_priority: true,
        }
    }

    /// The topic this sink publishes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl Sink for KafkaSink {
    fn send(&self, envelope: Envelope<'_>, delivery: Delivery) {
        let headers = envelope.traceparent.map(|tp| {
            OwnedHeaders::new().insert(Header {
                key: "traceparent",
                value: Some(tp),
            })
        });
        let key = envelope.key;
        let routes = &self.producer.context().routes;
        let route = routes.park(delivery);
        let mut record = BaseRecord::with_opaque_to(&self.topic, route)
            .key(key)
            .payload(envelope.payload);
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        // The clock is read only once librdkafka's queue is full.
        let mut deadline = None;
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if *deadline
                        .get_or_insert_with(|| Instant::now() + self.queue_full_timeout)
                        > Instant::now() =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((err, _)) => {
                    routes.report(route, Err((key, envelope.payload, &err.to_string())));
                    return;
                }
            }
        }
    }

    fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        self.producer
            .flush(timeout)
            .map_err(|_| SinkError::FlushTimeout(timeout))
    }

    fn describe(&self) -> String {
        format!("kafka topic {} at {}", self.topic, self.brokers)
    }
}

/// Routes librdkafka's delivery reports and errors to the tracker.
#[derive(Default)]
struct SinkContext {
    routes: Routes,
}

/// Where each message's outcome goes. librdkafka keeps a pointer-sized opaque with each message: live events of
/// the first tracker sending through this sink (normally the only one) carry route 0 and find their reporter in
/// `primary`, which never changes once set, so the worker and librdkafka's polling thread write no shared cache
/// line per event. Anything else (spool replays, a second tracker sharing the sink) is parked under a fresh
/// number until its report.
#[derive(Default)]
struct Routes {
    primary: OnceLock<Arc<Reporter>>,
    parked: Mutex<HashMap<usize, Delivery>>,
    next: AtomicUsize,
}

/// The primary tracker's live events.
const PRIMARY: usize = 0;

impl Routes {
    fn park(&self, delivery: Delivery) -> usize {
        if let Some(reporter) = delivery.live_reporter()
            && Arc::ptr_eq(self.primary.get_or_init(|| reporter.clone()), reporter)
        {
            return PRIMARY;
        }
        // Never PRIMARY, even after wrapping around.
        let route = self
            .next
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1)
            .max(1);
        self.lock().insert(route, delivery);
        route
    }

    /// Reports the outcome of the message on `route`: delivered, or failed with its key, payload and reason.
    fn report(&self, route: usize, outcome: Result<(), (&str, &[u8], &str)>) {
        if route == PRIMARY {
            let Some(reporter) = self.primary.get() else {
                return;
            };
            match outcome {
                Ok(()) => reporter.live_delivered(),
                Err((key, payload, reason)) => reporter.live_failed(key, payload, reason),
            }
        } else if let Some(delivery) = self.lock().remove(&route) {
            match outcome {
                Ok(()) => delivery.delivered(),
                Err((key, payload, reason)) => delivery.failed(key, payload, reason),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<usize, Delivery>> {
        self.parked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ClientContext for SinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(%error, reason, "saga-tracker: Kafka client error");
    }
}

impl ProducerContext for SinkContext {
    /// The message's route (see [`Routes`]).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, route: usize) {
        match result {
            Ok(_) => self.routes.report(route, Ok(())),
            Err((err, message)) => {
                let key = message
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or("");
                let reason = err.to_string();
                self.routes
                    .report(route, Err((key, message.payload().unwrap_or(&[]), &reason)));
            }
        }
    }
}
