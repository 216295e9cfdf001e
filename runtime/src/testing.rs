//! Helpers for doc examples and tests (this workspace's and users'): a sample event and a Kafka to test against.
//! Not part of the stable API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Message, Offset, TopicPartitionList};

/// The environment variable naming an external broker (`host:port`) to run Kafka tests against.
pub const TEST_BROKERS_ENV: &str = "SAGA_TRACKER_TEST_BROKERS";

pub use saga_tracker_core::testing::sample_event;

/// A Kafka for tests: librdkafka's in-process mock cluster, or the broker in `SAGA_TRACKER_TEST_BROKERS`.
pub struct TestKafka {
    cluster: Option<MockCluster<'static, DefaultProducerContext>>,
    brokers: String,
    broker_count: i32,
}

impl std::fmt::Debug for TestKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKafka")
            .field("brokers", &self.brokers)
            .field("mock", &self.is_mock())
            .finish()
    }
}

/// Errors of the test Kafka helpers.
#[derive(Debug, thiserror::Error)]
#[error("test kafka: {0}")]
pub struct TestKafkaError(String);

fn err(e: impl std::fmt::Display) -> TestKafkaError {
    TestKafkaError(e.to_string())
}

impl TestKafka {
    /// The external broker when `SAGA_TRACKER_TEST_BROKERS` is set, else a 3-broker mock cluster.
    pub fn start() -> Result<TestKafka, TestKafkaError> {
        Self::start_with(3)
    }

    /// Like [`start`](Self::start), with `broker_count` mock brokers.
    pub fn start_with(broker_count: i32) -> Result<TestKafka, TestKafkaError> {
        match std::env::var(TEST_BROKERS_ENV) {
            Ok(brokers) if !brokers.trim().is_empty() => Ok(TestKafka {
                cluster: None,
                brokers,
                broker_count: 0,
            }),
            _ => {
                let cluster = MockCluster::new(broker_count).map_err(err)?;
                let brokers = cluster.bootstrap_servers();
                Ok(TestKafka {
                    cluster: Some(cluster),
                    brokers,
                    broker_count,
                })
            }
        }
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// True on the in-process mock cluster.
    pub fn is_mock(&self) -> bool {
        self.cluster.is_some()
    }

    /// A topic name unique to this run (an external broker is shared between runs).
    pub fn unique_topic(&self, base: &str) -> String {
        format!("{base}.test-{}", uuid::Uuid::now_v7().simple())
    }

    /// Creates a topic with `partitions` partitions (replication 1).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), TestKafkaError> {
        if let Some(cluster) = &self.cluster {
            return cluster.create_topic(topic, partitions, 1).map_err(err);
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .map_err(err)?;
        let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = futures::executor::block_on(admin.create_topics(
            [&new_topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .map_err(err)?;
        for result in results {
            if let Err((name, code)) = result
                && code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
            {
                return Err(TestKafkaError(format!("create topic {name}: {code}")));
            }
        }
        Ok(())
    }

    /// Takes every mock broker down (only on the mock cluster).
    pub fn all_brokers_down(&self) -> Result<(), TestKafkaError> {
        let cluster = self
            .cluster
            .as_ref()
            .ok_or_else(|| TestKafkaError("external broker: cannot stop it".into()))?;
        for id in 1..=self.broker_count {
            cluster.broker_down(id).map_err(err)?;
        }
        Ok(())
    }

    /// Brings every mock broker back (only on the mock cluster).
    pub fn all_brokers_up(&self) -> Result<(), TestKafkaError> {
        let cluster = self
            .cluster
            .as_ref()
            .ok_or_else(|| TestKafkaError("external broker: cannot start it".into()))?;
        for id in 1..=self.broker_count {
            cluster.broker_up(id).map_err(err)?;
        }
        Ok(())
    }

    /// Reads every message of `topic` from the beginning (partitions assigned, no group rebalance): until the
    /// high watermarks are reached, then on until nothing new arrives for a second (some brokers report
    /// watermarks late or per batch).
    pub fn read_all(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<OwnedMessage>, TestKafkaError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set(
                "group.id",
                format!("saga-tracker-test-{}", uuid::Uuid::now_v7().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(err)?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(err)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(TestKafkaError(format!("topic {topic} has no partitions")));
        }
        let mut assignment = TopicPartitionList::new();
        let mut remaining: BTreeMap<i32, i64> = BTreeMap::new();
        for &p in &partitions {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(err)?;
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(err)?;
            if high > low {
                remaining.insert(p, high);
            }
        }
        consumer.assign(&assignment).map_err(err)?;
        let deadline = Instant::now() + timeout;
        let idle = Duration::from_secs(1);
        let mut last_message = Instant::now();
        let mut messages = Vec::new();
        while !remaining.is_empty() || last_message.elapsed() < idle {
            if Instant::now() > deadline {
                return Err(TestKafkaError(format!(
                    "timed out after {timeout:?} with {} messages read; partitions not drained: {remaining:?}",
                    messages.len()
                )));
            }
            if let Some(result) = consumer.poll(Duration::from_millis(100)) {
                let message = result.map_err(err)?;
                if let Some(&high) = remaining.get(&message.partition())
                    && message.offset() + 1 >= high
                {
                    remaining.remove(&message.partition());
                }
                messages.push(message.detach());
                last_message = Instant::now();
            }
        }
        Ok(messages)
    }
}
