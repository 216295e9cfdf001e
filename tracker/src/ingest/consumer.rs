//! The Kafka consumer: manual offset commits, partition assignment, and consumer lag from librdkafka statistics.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{Assignment, Config};
use crate::metrics::Metrics;

/// The consumer type the ingest loop uses.
pub type TrackerConsumer = StreamConsumer<LagContext>;

/// Forwards each partition's consumer lag from librdkafka's statistics to the metrics.
pub struct LagContext {
    metrics: Arc<Metrics>,
    topic: String,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        for (partition, p) in &topic.partitions {
            if *partition < 0 {
                continue; // librdkafka's internal "unassigned" partition
            }
            let lag = if p.consumer_lag >= 0 {
                p.consumer_lag
            } else if p.hi_offset >= 0 && p.committed_offset < 0 {
                // nothing committed yet: everything retained is behind
                p.hi_offset - p.lo_offset.max(0)
            } else {
                self.metrics.stall().behind(&self.topic, *partition, 0);
                continue;
            };
            self.metrics.set_lag(&self.topic, *partition, lag);
            // only the partitions this consumer reads count for stall detection
            let behind = if p.desired { lag } else { 0 };
            self.metrics.stall().behind(&self.topic, *partition, behind);
        }
    }
}

impl ConsumerContext for LagContext {}

/// Why the consumer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// librdkafka refused the configuration or the subscription.
    #[error("kafka consumer: {0}")]
    Kafka(#[from] KafkaError),
    /// `assign-all` found no partitions.
    #[error("topic `{0}` has no partitions (does it exist?); `assign-all` needs an existing topic")]
    NoPartitions(String),
    /// The metadata task panicked or was cancelled.
    #[error("kafka metadata request did not complete")]
    Join,
}

/// Creates the consumer and subscribes or assigns per `config.assignment`.
pub async fn create(
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<Arc<TrackerConsumer>, ConsumerError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "statistics.interval.ms",
            config.stats_interval_ms.to_string(),
        );
    for (k, v) in &config.kafka_properties {
        cc.set(k, v);
    }
    let context = LagContext {
        metrics,
        topic: config.topic.clone(),
    };
    let consumer: Arc<TrackerConsumer> = Arc::new(cc.create_with_context(context)?);
    match config.assignment {
        Assignment::Subscribe => consumer.subscribe(&[&config.topic])?,
        Assignment::AssignAll => {
            let topic = config.topic.clone();
            let c = Arc::clone(&consumer);
            let tpl = tokio::task::spawn_blocking(
                move || -> Result<TopicPartitionList, ConsumerError> {
                    let metadata = c.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
                    let mut tpl = TopicPartitionList::new();
                    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
                        for p in t.partitions() {
                            tpl.add_partition_offset(&topic, p.id(), Offset::Stored)?;
                        }
                    }
                    if tpl.count() == 0 {
                        return Err(ConsumerError::NoPartitions(topic));
                    }
                    Ok(tpl)
                },
            )
            .await
            .map_err(|_| ConsumerError::Join)??;
            consumer.assign(&tpl)?;
        }
    }
    Ok(consumer)
}
