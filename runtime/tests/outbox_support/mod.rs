//! Shared by the outbox tests: a fresh PostgreSQL schema with the outbox migrated, a Kafka topic, a tracker that
//! sends failures directly to that topic, and reading the topic back.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use saga_tracker::outbox::{Relay, RelayConfig};
use saga_tracker::testing::TestKafka;
use saga_tracker::{KafkaSink, SagaEvent, Tracker, codec};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

pub const T: Duration = Duration::from_secs(30);

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own, with the outbox migrated into it; dropped when this is dropped (also on panic).
pub struct TestDb {
    pub url: String,
    pub schema: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let url = database_url();
        let schema = format!("test_outbox_{}", Uuid::now_v7().simple());
        let admin = PgPool::connect(&url).await.expect("connect to PostgreSQL");
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
        let pool = pool_in(&url, &schema, 8).await;
        saga_tracker::outbox::migrate(&pool)
            .await
            .expect("outbox migrations");
        TestDb { url, schema, pool }
    }

    /// Another pool on the same schema.
    pub async fn pool(&self, max: u32) -> PgPool {
        pool_in(&self.url, &self.schema, max).await
    }

    pub async fn published(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM saga_tracker_outbox WHERE published_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await
        .expect("count")
    }

    pub async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM saga_tracker_outbox")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    pub async fn event_ids(&self) -> Vec<Uuid> {
        sqlx::query_scalar("SELECT event_id FROM saga_tracker_outbox")
            .fetch_all(&self.pool)
            .await
            .expect("ids")
    }
}

pub async fn pool_in(url: &str, schema: &str, max: u32) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .expect("database url")
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(max)
        .connect_with(options)
        .await
        .expect("pool")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // A runtime of its own: Drop may run inside (or outside) the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(pool) = PgPool::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .execute(&pool)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Kafka with a fresh 3-partition topic.
pub struct TestTopic {
    pub kafka: TestKafka,
    pub topic: String,
}

impl TestTopic {
    pub fn new() -> TestTopic {
        let kafka = TestKafka::start().expect("kafka");
        let topic = kafka.unique_topic("saga.tracker");
        kafka.create_topic(&topic, 3).expect("topic");
        TestTopic { kafka, topic }
    }

    pub fn brokers(&self) -> &str {
        self.kafka.brokers()
    }

    pub fn sink(&self) -> KafkaSink {
        KafkaSink::builder(self.kafka.brokers())
            .topic(&self.topic)
            .message_timeout(Duration::from_secs(20))
            .build()
            .expect("sink")
    }

    /// A tracker whose direct sink (the failures) publishes to this topic.
    pub fn tracker(&self, spool: &std::path::Path) -> Tracker {
        Tracker::builder()
            .service("product-service")
            .sink(self.sink())
            .spool_dir(spool)
            .build()
            .expect("tracker")
    }

    pub fn relay(&self, pool: PgPool, batch_size: u32) -> Relay {
        Relay::new(pool, self.sink()).config(RelayConfig {
            batch_size,
            poll_interval: Duration::from_millis(200),
            ..RelayConfig::default()
        })
    }

    /// Every message on the topic, decoded.
    pub fn read(&self) -> Vec<Published> {
        self.kafka
            .read_all(&self.topic, Duration::from_secs(60))
            .expect("read topic")
            .into_iter()
            .map(Published::from)
            .collect()
    }
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Published {
    pub key: String,
    pub payload: Vec<u8>,
    pub event: SagaEvent,
    pub headers: BTreeMap<String, String>,
}

impl From<OwnedMessage> for Published {
    fn from(m: OwnedMessage) -> Self {
        let payload = m.payload().expect("payload").to_vec();
        let event = codec::decode(&payload).expect("a saga-tracker event");
        let mut headers = BTreeMap::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                headers.insert(
                    header.key.to_owned(),
                    String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        Published {
            key: String::from_utf8(m.key().expect("key").to_vec()).expect("utf-8 key"),
            payload,
            event,
            headers,
        }
    }
}

/// Runs rounds until one claims nothing; returns the rows published.
pub async fn drain(relay: &Relay) -> usize {
    let mut published = 0;
    loop {
        let report = relay.run_once().await.expect("relay round");
        published += report.published;
        if report.claimed == 0 {
            return published;
        }
    }
}
