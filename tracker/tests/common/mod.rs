//! Shared test harness: a fresh PostgreSQL schema per test, a MockCluster (or the broker in
//! `SAGA_TRACKER_TEST_BROKERS`), event builders, and a producer.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use saga_tracker_core::{SagaEvent, StepError, StepStatus};
use saga_tracker_service::{Assignment, Config, Service};
use uuid::Uuid;

pub mod conformance;
pub mod prom;
pub mod proxy;

pub const PARTITIONS: i32 = 3;

/// A schema of its own in the test database, dropped when the value is dropped (also on panic).
pub struct TestDb {
    pub url: String,
    pub schema: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        TestDb {
            url,
            schema: format!("test_{}", Uuid::now_v7().simple()),
        }
    }
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
                if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&url)
                    .await
                {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .execute(&pool)
                        .await;
                }
            });
        })
        .join();
    }
}

/// The Kafka side: a MockCluster, or a real broker when `SAGA_TRACKER_TEST_BROKERS` is set (topics get unique
/// names either way).
pub struct TestKafka {
    cluster: Option<MockCluster<'static, DefaultProducerContext>>,
    pub brokers: String,
    pub topic: String,
    pub dlq_topic: String,
    pub producer: FutureProducer,
}

impl TestKafka {
    pub async fn new() -> TestKafka {
        let suffix = Uuid::now_v7().simple().to_string();
        let topic = format!("saga.tracker.{suffix}");
        let dlq_topic = format!("saga.tracker.dlq.{suffix}");
        let (cluster, brokers) = match std::env::var("SAGA_TRACKER_TEST_BROKERS") {
            Ok(brokers) if !brokers.trim().is_empty() => {
                create_real_topics(&brokers, &[(&topic, PARTITIONS), (&dlq_topic, 1)]).await;
                (None, brokers)
            }
            _ => {
                let cluster = MockCluster::new(1).expect("mock cluster");
                cluster
                    .create_topic(&topic, PARTITIONS, 1)
                    .expect("create topic");
                cluster
                    .create_topic(&dlq_topic, 1, 1)
                    .expect("create dlq topic");
                let brokers = cluster.bootstrap_servers();
                (Some(cluster), brokers)
            }
        };
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            // Long enough for the broker-outage test on a loaded machine: messages produced while the broker is
            // down wait for it, and the reconnect backoff stays short once it is back (librdkafka's default grows
            // to 10 s; a 10 s message timeout then expired before the reconnect in a CI run).
            .set("message.timeout.ms", "60000")
            .set("reconnect.backoff.max.ms", "500")
            .create()
            .expect("producer");
        TestKafka {
            cluster,
            brokers,
            topic,
            dlq_topic,
            producer,
        }
    }

    /// Sends raw bytes keyed by `key` and waits for the acknowledgement.
    pub async fn send_raw(&self, key: &str, payload: &[u8]) {
        self.producer
            .send(
                FutureRecord::to(&self.topic).key(key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }

    /// Sends events encoded with the runtime codec, keyed by saga id.
    pub async fn send(&self, events: &[SagaEvent]) {
        for e in events {
            self.send_raw(&e.saga_id, &saga_tracker_core::codec::encode(e))
                .await;
        }
    }

    /// Reads `n` messages from the DLQ topic (from the beginning), or fails after a generous deadline.
    pub fn read_dlq(&self, n: usize) -> Vec<OwnedMessage> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("dlq-reader-{}", Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.dlq_topic, 0, Offset::Beginning)
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while out.len() < n && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                out.push(m.detach());
            }
        }
        out
    }

    /// A service configuration for this cluster and database, listening on an ephemeral port.
    pub fn config(&self, db: &TestDb, group: &str) -> Config {
        let mut c = Config::new(&db.url, &self.brokers);
        c.database_schema = Some(db.schema.clone());
        c.database_max_connections = 4;
        c.topic = self.topic.clone();
        c.dlq_topic = self.dlq_topic.clone();
        c.group_id = group.to_owned();
        c.assignment = Assignment::AssignAll;
        c.listen = "127.0.0.1:0".parse().expect("addr");
        c.batch_linger_ms = 20;
        c.stats_interval_ms = 200;
        c.metrics_refresh_ms = 100;
        c
    }

    pub fn is_mock(&self) -> bool {
        self.cluster.is_some()
    }

    /// The mock cluster (fault injection), None on a real broker.
    pub fn mock(&self) -> Option<&MockCluster<'static, DefaultProducerContext>> {
        self.cluster.as_ref()
    }

    /// Takes the mock cluster's broker down (`false`) or up (`true`); no-op on a real broker.
    pub fn set_broker_up(&self, up: bool) {
        if let Some(cluster) = &self.cluster {
            let result = if up {
                cluster.broker_up(1)
            } else {
                cluster.broker_down(1)
            };
            result.expect("mock broker state");
        }
    }
}

async fn create_real_topics(brokers: &str, topics: &[(&str, i32)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topics");
}

/// Header value as text.
pub fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Polls `check` until it returns `Some`, or panics after 30 s (a generous deadline, not a timing assertion).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the service has stored `n` events.
pub async fn wait_for_events(service: &Service, n: i64) {
    eventually(&format!("{n} stored events"), || async {
        let count = service.store().event_count().await.expect("count");
        (count >= n).then_some(())
    })
    .await;
    assert_eq!(
        service.store().event_count().await.expect("count"),
        n,
        "more events stored than expected"
    );
}

/// Builds events of one saga with increasing times.
pub struct SagaBuilder {
    pub saga_id: String,
    saga_type: String,
    t: i64,
    pub events: Vec<SagaEvent>,
}

pub const T0: i64 = 1_732_406_400_000_000;

impl SagaBuilder {
    pub fn new(saga_id: &str, saga_type: &str, start_offset_secs: i64) -> Self {
        SagaBuilder {
            saga_id: saga_id.to_owned(),
            saga_type: saga_type.to_owned(),
            t: T0 + start_offset_secs * 1_000_000,
            events: Vec::new(),
        }
    }

    pub fn ev(mut self, service: &str, step: &str, status: StepStatus, attempt: i32) -> Self {
        self.t += 1_000;
        let terminal = status.is_terminal();
        let failed = matches!(status, StepStatus::Failed | StepStatus::CompensationFailed);
        self.events.push(SagaEvent {
            event_id: Uuid::now_v7(),
            idempotency_key: SagaEvent::idempotency_key_for(&self.saga_id, step, status, attempt),
            saga_id: self.saga_id.clone(),
            saga_type: self.saga_type.clone(),
            step: step.to_owned(),
            status,
            attempt,
            order_id: Some(format!("order-{}", self.saga_id)),
            service: service.to_owned(),
            recorded_at: self.t,
            duration_micros: terminal.then_some(1_500),
            error: failed.then(|| StepError::new("Declined", "card declined")),
            metadata: BTreeMap::from([(
                "traceId".to_owned(),
                "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
            )]),
            step_index: None,
            step_count: None,
            compensable: None,
            cause_idempotency_key: None,
        });
        self
    }
}

impl SagaBuilder {
    /// Marks the last event as written by a v2 service: the step's place in a saga of `count` steps.
    pub fn v2(mut self, index: i32, count: i32, compensable: bool) -> Self {
        if let Some(e) = self.events.last_mut() {
            e.step_index = Some(index);
            e.step_count = Some(count);
            e.compensable = Some(compensable);
        }
        self
    }
}

/// An HTTP client, optionally with a bearer token.
pub struct Api {
    pub base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Api {
    pub fn new(service: &Service, token: Option<&str>) -> Api {
        Api {
            base: format!("http://{}", service.addr()),
            client: reqwest::Client::new(),
            token: token.map(str::to_owned),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = self.get_typed(path).await;
        (status, body)
    }

    /// GET: status, `Content-Type` and body.
    pub async fn get_typed(&self, path: &str) -> (u16, String, String) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, content_type, resp.text().await.expect("body"))
    }

    pub async fn json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get(path).await;
        (
            status,
            serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")),
        )
    }

    /// GET expecting 200 and JSON.
    pub async fn ok(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.json(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}
