//! The Kafka plumbing: the broker (embedded mock cluster or a real one), the topics, and JSON messages on the
//! command and reply topics.
//!
//! Consumers are always *assigned* partitions explicitly, starting at the offsets a run noted when it began, so
//! nothing depends on consumer-group rebalancing and a shared broker's old messages are mostly not re-read; those
//! that are (a start offset too early) are skipped by content, see [`Kafka::end_offsets`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::DemoError;
use crate::cli::BrokerChoice;
use crate::saga::ServiceName;

/// The topic every step is recorded to.
pub const TRACKER_TOPIC: &str = saga_tracker::sink::DEFAULT_TOPIC;
/// Where the services send their replies to the order service.
pub const REPLY_TOPIC: &str = "order-saga-demo.replies";
/// Partitions of every topic the demo creates.
pub const PARTITIONS: i32 = 3;
/// How long the first metadata fetch may take before the brokers count as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many brokers the embedded cluster has.
pub const EMBEDDED_BROKERS: i32 = 3;

/// The command topic of a service, e.g. `order-saga-demo.product.commands`.
pub const fn command_topic(service: ServiceName) -> &'static str {
    match service {
        ServiceName::Order => "order-saga-demo.order.commands",
        ServiceName::Product => "order-saga-demo.product.commands",
        ServiceName::Payment => "order-saga-demo.payment.commands",
    }
}

/// Every topic the demo uses.
pub fn all_topics() -> Vec<&'static str> {
    let mut topics = vec![TRACKER_TOPIC, REPLY_TOPIC];
    topics.extend(ServiceName::ALL.map(command_topic));
    topics
}

/// Start offsets per partition of one topic.
pub type Offsets = BTreeMap<i32, i64>;

/// The demo's Kafka: an embedded mock cluster or a real broker.
pub struct Kafka {
    cluster: Option<MockCluster<'static, DefaultProducerContext>>,
    brokers: String,
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka")
            .field("brokers", &self.brokers)
            .field("embedded", &self.is_embedded())
            .finish()
    }
}

fn kafka_error(what: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> DemoError {
    let what = what.into();
    move |e| DemoError::Kafka(format!("{what}: {e}"))
}

impl Kafka {
    /// Starts the embedded cluster, or checks that the external brokers answer a metadata request within
    /// [`CONNECT_TIMEOUT`] ([`DemoError::BrokersUnreachable`] otherwise).
    pub fn connect(choice: &BrokerChoice) -> Result<Kafka, DemoError> {
        match choice {
            BrokerChoice::Embedded => {
                let cluster = MockCluster::new(EMBEDDED_BROKERS).map_err(kafka_error(
                    "cannot start the embedded Kafka (librdkafka MockCluster)",
                ))?;
                let brokers = cluster.bootstrap_servers();
                Ok(Kafka {
                    cluster: Some(cluster),
                    brokers,
                })
            }
            BrokerChoice::External(brokers) => {
                let consumer: BaseConsumer = base_config(brokers)
                    .set("group.id", "order-saga-demo-probe")
                    .create()
                    .map_err(|e| DemoError::InvalidInput(format!("--brokers {brokers}: {e}")))?;
                consumer
                    .fetch_metadata(None, CONNECT_TIMEOUT)
                    .map_err(|e| DemoError::BrokersUnreachable {
                        brokers: brokers.clone(),
                        timeout: CONNECT_TIMEOUT,
                        reason: e.to_string(),
                    })?;
                Ok(Kafka {
                    cluster: None,
                    brokers: brokers.clone(),
                })
            }
        }
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// True for the in-process mock cluster.
    pub fn is_embedded(&self) -> bool {
        self.cluster.is_some()
    }

    /// How long a fetch may wait for data: a real broker answers as soon as data arrives, the mock cluster
    /// only when the wait is over, so it gets a short one.
    fn fetch_wait_ms(&self) -> u32 {
        if self.is_embedded() { 5 } else { 100 }
    }

    /// A one-line description, e.g. `embedded Kafka (librdkafka MockCluster, 3 brokers)`.
    pub fn describe(&self) -> String {
        if self.is_embedded() {
            format!("embedded Kafka (librdkafka MockCluster, {EMBEDDED_BROKERS} brokers)")
        } else {
            format!("Kafka at {}", self.brokers)
        }
    }

    /// Creates the demo's topics ([`all_topics`]) that do not exist yet (on a real broker with the admin API).
    pub async fn ensure_topics(&self) -> Result<(), DemoError> {
        if let Some(cluster) = &self.cluster {
            for topic in all_topics() {
                cluster
                    .create_topic(topic, PARTITIONS, 1)
                    .map_err(kafka_error(format!("cannot create topic {topic}")))?;
            }
            return Ok(());
        }
        let existing: Vec<String> = {
            let consumer = self.plain_consumer()?;
            let metadata = consumer
                .fetch_metadata(None, Duration::from_secs(10))
                .map_err(kafka_error("cannot list topics"))?;
            metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none())
                .map(|t| t.name().to_owned())
                .collect()
        };
        let missing: Vec<&str> = all_topics()
            .into_iter()
            .filter(|t| !existing.iter().any(|e| e == t))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = base_config(&self.brokers)
            .create()
            .map_err(kafka_error("cannot create a Kafka admin client"))?;
        let new_topics: Vec<NewTopic<'_>> = missing
            .into_iter()
            .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(15)));
        let results = admin
            .create_topics(new_topics.iter(), &options)
            .await
            .map_err(kafka_error(format!(
                "cannot create the demo's topics ({}; create them and run again)",
                all_topics().join(", ")
            )))?;
        for result in results {
            if let Err((topic, code)) = result
                && code != RDKafkaErrorCode::TopicAlreadyExists
            {
                return Err(DemoError::Kafka(format!(
                    "cannot create topic {topic}: {code}"
                )));
            }
        }
        Ok(())
    }

    /// A producer for commands and replies.
    pub fn producer(&self) -> Result<FutureProducer, DemoError> {
        base_config(&self.brokers)
            .set("linger.ms", "1")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(kafka_error("cannot create a Kafka producer"))
    }

    /// The current end (high watermark) of every partition of `topic`: where a reader of "what happens from
    /// now on" starts.
    ///
    /// Only an optimisation, never what decides which messages belong to a run: a real broker may report a high
    /// watermark below the true end (tansu 0.6 reports it per record batch), so a reader starting here can see
    /// messages of earlier runs. Every reader of the demo therefore tells its run's messages apart by content
    /// (the run id in the saga ids, see [`crate::saga::saga_id_prefix`], or for a service serving another
    /// process the time it started) and skips and counts the rest; starting at offset 0 gives the same results.
    pub fn end_offsets(&self, topic: &str) -> Result<Offsets, DemoError> {
        let consumer = self.plain_consumer()?;
        end_offsets(&consumer, topic)
    }

    /// The first offset (low watermark) of every partition of `topic`.
    pub fn begin_offsets(&self, topic: &str) -> Result<Offsets, DemoError> {
        let consumer = self.plain_consumer()?;
        let mut offsets = Offsets::new();
        for partition in partitions(&consumer, topic)? {
            let (low, _) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map_err(kafka_error(format!("watermarks of {topic}/{partition}")))?;
            offsets.insert(partition, low);
        }
        Ok(offsets)
    }

    /// A consumer assigned every partition of `topic` at `start` (partitions missing from `start`: from the
    /// beginning).
    pub fn consumer_from(&self, topic: &str, start: &Offsets) -> Result<StreamConsumer, DemoError> {
        let consumer: StreamConsumer = consumer_config(&self.brokers, self.fetch_wait_ms())
            .create()
            .map_err(kafka_error("cannot create a Kafka consumer"))?;
        let partitions = partitions(&consumer, topic)?;
        consumer
            .assign(&assignment(topic, &partitions, start)?)
            .map_err(kafka_error(format!("assign {topic}")))?;
        Ok(consumer)
    }

    /// A blocking consumer (no partitions assigned yet).
    pub fn plain_consumer(&self) -> Result<BaseConsumer, DemoError> {
        consumer_config(&self.brokers, self.fetch_wait_ms())
            .create()
            .map_err(kafka_error("cannot create a Kafka consumer"))
    }
}

/// Settings shared by every client.
fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Error);
    config
}

/// A consumer that is assigned partitions (the group id is never used to join a group).
fn consumer_config(brokers: &str, fetch_wait_ms: u32) -> ClientConfig {
    let mut config = base_config(brokers);
    config
        .set(
            "group.id",
            format!("order-saga-demo-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .set("fetch.error.backoff.ms", "20");
    config
}

/// The partition ids of `topic`, waiting a little for a just-created topic to show up in the metadata.
pub fn partitions<C: Consumer>(consumer: &C, topic: &str) -> Result<Vec<i32>, DemoError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(kafka_error(format!("metadata of {topic}")))?;
        let ids: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if !ids.is_empty() {
            return Ok(ids);
        }
        if Instant::now() > deadline {
            return Err(DemoError::Kafka(format!(
                "topic {topic} does not exist or has no partitions"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The high watermark of every partition of `topic` (an optimisation of where to start reading, see
/// [`Kafka::end_offsets`]).
pub fn end_offsets<C: Consumer>(consumer: &C, topic: &str) -> Result<Offsets, DemoError> {
    let mut offsets = Offsets::new();
    for partition in partitions(consumer, topic)? {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(kafka_error(format!("watermarks of {topic}/{partition}")))?;
        offsets.insert(partition, high);
    }
    Ok(offsets)
}

fn assignment(
    topic: &str,
    partitions: &[i32],
    start: &Offsets,
) -> Result<TopicPartitionList, DemoError> {
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        let offset = start
            .get(&p)
            .map_or(Offset::Beginning, |&o| Offset::Offset(o));
        list.add_partition_offset(topic, p, offset)
            .map_err(kafka_error(format!("assign {topic}/{p}")))?;
    }
    Ok(list)
}

/// Sends `message` as JSON to `topic`, keyed by `key`, and waits for the broker's acknowledgement.
pub async fn send_json<T: Serialize>(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    message: &T,
) -> Result<(), DemoError> {
    let payload = serde_json::to_vec(message)
        .map_err(|e| DemoError::Kafka(format!("encode message: {e}")))?;
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(&payload),
            Timeout::After(Duration::from_secs(30)),
        )
        .await
        .map_err(|(e, _)| DemoError::Kafka(format!("send to {topic}: {e}")))?;
    Ok(())
}
