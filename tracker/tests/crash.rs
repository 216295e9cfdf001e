//! Crash tests with a real process: the service binary is killed with SIGKILL mid-stream (no shutdown, a batch
//! in flight) and started again; every event is in the database exactly once, by event id.

mod common;

use std::process::{Child, Command, Stdio};

use common::{SagaBuilder, TestDb, TestKafka};
use saga_tracker_core::StepStatus::*;

const SAGAS: i64 = 1500;

fn start_service(kafka: &TestKafka, db: &TestDb) -> Child {
    Command::new(env!("CARGO_BIN_EXE_saga-tracker-service"))
        .args(["--database-url", &db.url])
        .args(["--database-schema", &db.schema])
        .args(["--kafka-brokers", &kafka.brokers])
        .args(["--topic", &kafka.topic, "--dlq-topic", &kafka.dlq_topic])
        .args(["--group-id", "crash-test", "--assignment", "assign-all"])
        .args(["--listen", "127.0.0.1:0", "--batch-size", "50"])
        .args(["--batch-linger-ms", "5"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the service binary")
}

async fn counts(pool: &sqlx::PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(DISTINCT event_id) FROM saga_events")
        .fetch_one(pool)
        .await
        .unwrap_or((0, 0))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_batch_then_restart_stores_every_event_exactly_once() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let events: Vec<_> = (0..SAGAS)
        .flat_map(|i| {
            SagaBuilder::new(&format!("crash-{i}"), "OrderSaga", i)
                .ev("order-service", "reserve_stock", Started, 1)
                .ev("order-service", "reserve_stock", Succeeded, 1)
                .events
        })
        .collect();
    let total = events.len() as i64;
    kafka.send(&events).await;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect({
            let schema = db.schema.clone();
            move |conn, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    sqlx::query(&format!("SET search_path TO \"{schema}\""))
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            }
        })
        .connect(&db.url)
        .await
        .expect("test pool");

    let mut first = start_service(&kafka, &db);
    // kill once some batches are stored and others are not: a batch is in flight
    let stored_at_kill = common::eventually("some batches stored", || async {
        let (n, _) = counts(&pool).await;
        (n >= 100).then_some(n)
    })
    .await;
    first.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    first.wait().expect("reaped");
    let (after_kill, _) = counts(&pool).await;
    assert!(
        after_kill < total,
        "killed after everything was stored ({after_kill}); the test needs a kill mid-stream"
    );
    assert!(after_kill >= stored_at_kill);

    let mut second = start_service(&kafka, &db);
    common::eventually("every event after the restart", || async {
        let (n, _) = counts(&pool).await;
        (n >= total).then_some(())
    })
    .await;
    // a little longer: a re-read batch must not add rows
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (rows, distinct) = counts(&pool).await;
    second.kill().expect("stop");
    second.wait().expect("reaped");
    assert_eq!(rows, total, "every event stored once");
    assert_eq!(distinct, total);
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
    let found: i64 =
        sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE event_id = ANY($1)")
            .bind(&ids)
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(found, total, "the stored ids are the produced ones");
    let sagas: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas WHERE status = 'SUCCEEDED'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(sagas, SAGAS, "derived rows complete after the crash");
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_while_ingesting_loses_nothing_and_duplicates_nothing() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    if !kafka.is_mock() {
        return; // needs the mock cluster's broker down/up
    }
    let events: Vec<_> = (0..40)
        .flat_map(|i| {
            SagaBuilder::new(&format!("outage-{i}"), "OrderSaga", i)
                .ev("order-service", "reserve_stock", Started, 1)
                .events
        })
        .collect();
    let service = saga_tracker_service::Service::start(kafka.config(&db, "broker-outage"))
        .await
        .expect("service starts");
    kafka.send(&events[..20]).await;
    common::wait_for_events(&service, 20).await;

    kafka.set_broker_up(false);
    // produced during the outage: the producer holds them until the broker is back
    let producer = kafka.producer.clone();
    let topic = kafka.topic.clone();
    let later: Vec<(String, Vec<u8>)> = events[20..]
        .iter()
        .map(|e| (e.saga_id.clone(), saga_tracker_core::codec::encode(e)))
        .collect();
    let sending = tokio::spawn(async move {
        for (key, payload) in later {
            producer
                .send(
                    rdkafka::producer::FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&payload),
                    std::time::Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("delivered after the outage");
        }
    });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(service.store().event_count().await.expect("count"), 20);
    kafka.set_broker_up(true);
    sending.await.expect("sender");
    common::wait_for_events(&service, 40).await;
    assert_eq!(service.metrics().dlq_total(), 0);
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM saga_events")
        .fetch_one(service.store().pool())
        .await
        .expect("count");
    assert_eq!(distinct, 40);
    service.shutdown().await;
}
