//! Two replicas in one consumer group (`--assignment subscribe`, the production default), each a child process
//! running the service binary: the partitions are split between them; one is killed with SIGKILL mid-stream and
//! the other takes its partitions over within 15 s; the killed one, restarted under the same
//! `--group-instance-id`, consumes again within 15 s. The database ends up holding exactly the produced events
//! (by event id) and the derived state of every saga is the one derived from all its events.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{SagaBuilder, TestDb, TestKafka};
use rdkafka::producer::FutureRecord;
use saga_tracker_core::{SagaEvent, StepStatus::*};
use saga_tracker_service::Store;
use saga_tracker_service::db::state::{self, EventFacts};

/// The failover deadline of issue 20.
const FAILOVER: Duration = Duration::from_secs(15);

/// One replica: the service binary as a child process, killed when dropped.
struct Replica {
    name: &'static str,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Replica {
    fn start(name: &'static str, kafka: &TestKafka, db: &TestDb, group: &str) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::env::temp_dir().join(format!("scale-out-{group}-{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_saga-tracker-service"));
        if kafka.is_mock() {
            // The MockCluster waits `session.timeout.ms - 1 s` before every assignment round (a broker assigns as
            // soon as every member rejoined) and cooperative-sticky needs two or three rounds to hand partitions
            // to a restarted member: with the 6 s default a restart takes 10-15 s there, on a broker ~1 s (static
            // membership). 4 s keeps the mock's rounds at 3 s; with a real broker the defaults are tested.
            command.args(["--kafka-property", "session.timeout.ms=4000"]);
        }
        let child = command
            .args(["--database-url", &db.url, "--database-schema", &db.schema])
            .args(["--kafka-brokers", &kafka.brokers, "--topic", &kafka.topic])
            .args(["--dlq-topic", &kafka.dlq_topic, "--group-id", group])
            .args(["--assignment", "subscribe", "--group-instance-id", name])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--batch-linger-ms", "20", "--stats-interval-ms", "500"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("the service binary starts");
        Replica {
            name,
            child,
            port,
            log,
        }
    }

    /// Events this replica stored since it started (`saga_tracker_events_ingested_total`, all labels).
    async fn ingested(&self) -> Option<u64> {
        let body = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(
            body.lines()
                .filter(|l| l.starts_with("saga_tracker_events_ingested_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64,
        )
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no shutdown, no final offset commit, no LeaveGroup
        let _ = self.child.wait();
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- log of replica {} ----\n{}",
                self.name,
                self.log_text()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Sagas `from..to` of ten events each (one in four fails at payment and is compensated).
fn sagas(prefix: &str, range: std::ops::Range<usize>) -> Vec<SagaEvent> {
    range
        .flat_map(|i| {
            let b = SagaBuilder::new(&format!("{prefix}-{i}"), "OrderSaga", i as i64)
                .ev("order-service", "create_order", Started, 1)
                .ev("order-service", "create_order", Succeeded, 1)
                .ev("product-service", "reserve_stock", Started, 1)
                .ev("product-service", "reserve_stock", Succeeded, 1)
                .ev("payment-service", "charge_payment", Started, 1);
            let b = if i % 4 == 0 {
                b.ev("payment-service", "charge_payment", Failed, 1)
                    .ev("product-service", "reserve_stock", CompensationStarted, 1)
                    .ev("product-service", "reserve_stock", Compensated, 1)
                    .ev("order-service", "create_order", CompensationStarted, 1)
                    .ev("order-service", "create_order", Compensated, 1)
            } else {
                b.ev("payment-service", "charge_payment", Succeeded, 1)
                    .ev("order-service", "confirm_order", Started, 1)
                    .ev("order-service", "confirm_order", Succeeded, 1)
                    .ev("shipping-service", "ship", Started, 1)
                    .ev("shipping-service", "ship", Succeeded, 1)
            };
            b.events
        })
        .collect()
}

/// Sends every event (keyed by saga id) concurrently and waits for all acknowledgements.
async fn send_all(kafka: &TestKafka, events: &[SagaEvent]) {
    let payloads: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (e.saga_id.clone(), saga_tracker_core::codec::encode(e)))
        .collect();
    let sends = payloads.iter().map(|(key, payload)| {
        kafka.producer.send(
            FutureRecord::to(&kafka.topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).expect("delivered");
    }
}

async fn stored(store: &Store) -> i64 {
    store.event_count().await.expect("count")
}

/// Waits until `n` events are stored; returns how long it took, or panics after `limit`.
async fn wait_stored(store: &Store, n: i64, limit: Duration, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let count = stored(store).await;
        if count >= n {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: {count} of {n} events stored after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_split_the_partitions_and_take_over_a_killed_one() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    // Migrate before the replicas start, and keep a pool for the checks.
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let group = format!("scale-out-{}", uuid::Uuid::now_v7().simple());
    let mut a = Replica::start("a", &kafka, &db, &group);
    let b = Replica::start("b", &kafka, &db, &group);
    let mut produced: Vec<SagaEvent> = Vec::new();

    // 1. Both replicas ingest: the group split the partitions between them.
    let first = sagas("first", 0..60);
    send_all(&kafka, &first).await;
    produced.extend(first);
    wait_stored(
        &store,
        produced.len() as i64,
        Duration::from_secs(30),
        "two replicas",
    )
    .await;
    common::eventually("both replicas ingested a share", || async {
        let (na, nb) = (a.ingested().await?, b.ingested().await?);
        (na > 0 && nb > 0 && na + nb >= produced.len() as u64).then_some(())
    })
    .await;

    // 2. Mid-stream, SIGKILL replica a: b takes over a's partitions.
    let second = sagas("second", 0..150);
    let (early, late) = second.split_at(second.len() / 3);
    send_all(&kafka, early).await;
    let stream = {
        let kafka_brokers = kafka.brokers.clone();
        let topic = kafka.topic.clone();
        let late = late.to_vec();
        tokio::spawn(async move {
            // keep producing while a dies: 10 chunks over ~1 s
            let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &kafka_brokers)
                .create()
                .expect("producer");
            for chunk in late.chunks(late.len().div_ceil(10)) {
                let sends = chunk.iter().map(|e| {
                    let payload = saga_tracker_core::codec::encode(e);
                    let key = e.saga_id.clone();
                    let producer = producer.clone();
                    let topic = topic.clone();
                    async move {
                        producer
                            .send(
                                FutureRecord::to(&topic).key(&key).payload(&payload),
                                Duration::from_secs(10),
                            )
                            .await
                            .map_err(|(e, _)| e)
                            .expect("delivered");
                    }
                });
                futures::future::join_all(sends).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.kill();
    let killed = Instant::now();
    stream.await.expect("producer task");
    produced.extend(second);
    let takeover = wait_stored(
        &store,
        produced.len() as i64,
        FAILOVER,
        "after SIGKILL of a replica",
    )
    .await;
    let takeover = takeover.max(killed.elapsed());
    eprintln!("takeover: every event stored {takeover:?} after the SIGKILL");
    assert!(takeover <= FAILOVER, "takeover took {takeover:?}");

    // 3. Restart a under the same instance id while events keep coming: it consumes again.
    let restarted = Instant::now();
    let a = Replica::start("a", &kafka, &db, &group);
    let mut round = 0;
    let resumed = loop {
        // a chunk of new sagas every ~200 ms, on every partition
        let chunk = sagas(&format!("third-{round}"), 0..10);
        send_all(&kafka, &chunk).await;
        produced.extend(chunk);
        round += 1;
        if a.ingested().await.unwrap_or(0) > 0 {
            break restarted.elapsed();
        }
        assert!(
            restarted.elapsed() < FAILOVER,
            "the restarted replica ingested nothing within {FAILOVER:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("restart: replica a ingesting {resumed:?} after its start");
    wait_stored(
        &store,
        produced.len() as i64,
        Duration::from_secs(10),
        "after the restart",
    )
    .await;

    // 4. The database holds exactly the produced set, and every saga's derived state is right.
    let ids: BTreeSet<uuid::Uuid> =
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT event_id FROM saga_events")
            .fetch_all(store.pool())
            .await
            .expect("ids")
            .into_iter()
            .collect();
    let expected: BTreeSet<uuid::Uuid> = produced.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), produced.len(), "no event stored twice or lost");
    assert_eq!(ids, expected);
    let mut by_saga: BTreeMap<&str, Vec<EventFacts>> = BTreeMap::new();
    for e in &produced {
        by_saga.entry(&e.saga_id).or_default().push(EventFacts {
            step_index: e.step_index,
            step_count: e.step_count,
            compensable: e.compensable,
            event_id: e.event_id,
            saga_type: e.saga_type.clone(),
            step: e.step.clone(),
            status: e.status,
            attempt: e.attempt,
            order_id: e.order_id.clone(),
            service: e.service.clone(),
            recorded_at: chrono::DateTime::from_timestamp_micros(e.recorded_at).expect("time"),
        });
    }
    let rows: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT saga_id, status, event_count FROM sagas")
            .fetch_all(store.pool())
            .await
            .expect("sagas");
    assert_eq!(rows.len(), by_saga.len());
    for (saga_id, status, count) in rows {
        let derived = state::derive(&by_saga[saga_id.as_str()]).expect("events");
        assert_eq!(status, derived.status.as_str(), "state of {saga_id}");
        assert_eq!(count as usize, derived.event_count, "events of {saga_id}");
    }
    let compensated: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sagas WHERE status = 'COMPENSATED'")
            .fetch_one(store.pool())
            .await
            .expect("count");
    assert!(compensated > 0, "the workload has compensated sagas");
    drop(b);
}
