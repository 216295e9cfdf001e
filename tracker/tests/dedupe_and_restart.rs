//! The same events twice give one row each; a restart mid-stream loses nothing and duplicates nothing.

mod common;

use common::{SagaBuilder, TestDb, TestKafka, wait_for_events};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Service;

fn sagas(prefix: &str, count: usize) -> Vec<saga_tracker_core::SagaEvent> {
    (0..count)
        .flat_map(|i| {
            SagaBuilder::new(&format!("{prefix}-{i}"), "OrderSaga", i as i64)
                .ev("order-service", "reserve_stock", Started, 1)
                .ev("order-service", "reserve_stock", Succeeded, 1)
                .ev("payment-service", "charge_payment", Started, 1)
                .events
        })
        .collect()
}

async fn saga_rows(service: &Service) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(service.store().pool())
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_events_twice_give_one_row_each() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let events = sagas("dup", 10);
    kafka.send(&events).await;
    kafka.send(&events).await; // producer retry / spool replay
    let service = Service::start(kafka.config(&db, "dedupe-test"))
        .await
        .expect("service starts");
    let n = events.len() as u64;
    common::eventually("both copies read", || async {
        (service.metrics().ingested_total() + service.metrics().duplicate_total() == 2 * n)
            .then_some(())
    })
    .await;
    assert_eq!(
        service.store().event_count().await.expect("count"),
        n as i64
    );
    assert_eq!(service.metrics().ingested_total(), n);
    assert_eq!(service.metrics().duplicate_total(), n);
    assert_eq!(saga_rows(&service).await, 10);
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM saga_events")
        .fetch_one(service.store().pool())
        .await
        .expect("count");
    assert_eq!(distinct, n as i64);
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sagas WHERE status = 'RUNNING' AND event_count = 3",
    )
    .fetch_one(service.store().pool())
    .await
    .expect("count");
    assert_eq!(running, 10, "duplicates must not count in the derived row");
    // librdkafka statistics report the committed position: nothing left behind
    common::eventually("consumer lag reported as 0", || async {
        (service.metrics().total_lag() == Some(0)).then_some(())
    })
    .await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_mid_stream_loses_nothing_and_duplicates_nothing() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let first = sagas("before", 20);
    let second = sagas("after", 15);
    kafka.send(&first).await;

    let service = Service::start(kafka.config(&db, "restart-test"))
        .await
        .expect("service starts");
    wait_for_events(&service, first.len() as i64).await;
    service.shutdown().await;

    kafka.send(&second).await;
    let service = Service::start(kafka.config(&db, "restart-test"))
        .await
        .expect("service restarts");
    let total = (first.len() + second.len()) as i64;
    wait_for_events(&service, total).await;
    // The second run resumed from the committed offsets: it read only the new events.
    common::eventually("offsets committed", || async {
        (service.metrics().ingested_total() == second.len() as u64).then_some(())
    })
    .await;
    assert_eq!(
        service.metrics().duplicate_total(),
        0,
        "the restarted service re-read committed events"
    );
    assert_eq!(saga_rows(&service).await, 35);
    let stored: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT event_id FROM saga_events ORDER BY event_id")
            .fetch_all(service.store().pool())
            .await
            .expect("ids");
    let mut sent: Vec<uuid::Uuid> = first.iter().chain(&second).map(|e| e.event_id).collect();
    sent.sort();
    assert_eq!(stored, sent);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_consumer_group_rereads_everything_into_the_same_rows() {
    // An offset rewind (new group) is absorbed like any duplicate.
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let events = sagas("rewind", 5);
    kafka.send(&events).await;
    let service = Service::start(kafka.config(&db, "group-a"))
        .await
        .expect("service starts");
    wait_for_events(&service, events.len() as i64).await;
    service.shutdown().await;
    let service = Service::start(kafka.config(&db, "group-b"))
        .await
        .expect("service starts");
    common::eventually("re-read", || async {
        (service.metrics().duplicate_total() == events.len() as u64).then_some(())
    })
    .await;
    assert_eq!(
        service.store().event_count().await.expect("count"),
        events.len() as i64
    );
    assert_eq!(service.metrics().ingested_total(), 0);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_failure_is_retried_without_losing_the_batch() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let service = Service::start(kafka.config(&db, "db-failure-test"))
        .await
        .expect("service starts");
    let pool = service.store().pool().clone();
    sqlx::query("ALTER TABLE saga_events RENAME TO saga_events_away")
        .execute(&pool)
        .await
        .expect("rename");
    let events = sagas("retry", 3);
    kafka.send(&events).await;
    common::eventually("a failed write", || async {
        (service.metrics().errors_total("database") > 0).then_some(())
    })
    .await;
    sqlx::query("ALTER TABLE saga_events_away RENAME TO saga_events")
        .execute(&pool)
        .await
        .expect("rename back");
    wait_for_events(&service, events.len() as i64).await;
    assert_eq!(saga_rows(&service).await, 3);
    service.shutdown().await;
}
