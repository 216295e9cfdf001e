//! Replay by time: rewinding the consumer group (refused while members hold it), re-ingesting a range.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{SagaBuilder, TestDb, TestKafka, wait_for_events};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use saga_tracker_core::SagaEvent;
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Service;
use saga_tracker_service::ops::OpsError;
use saga_tracker_service::ops::replay::{self, ReplayOptions};

fn sagas(prefix: &str, count: usize) -> Vec<SagaEvent> {
    (0..count)
        .flat_map(|i| {
            SagaBuilder::new(&format!("{prefix}-{i}"), "OrderSaga", i as i64)
                .ev("order-service", "reserve_stock", Started, 1)
                .ev("order-service", "reserve_stock", Succeeded, 1)
                .events
        })
        .collect()
}

fn options(kafka: &TestKafka, group: &str, from: chrono::DateTime<Utc>) -> ReplayOptions {
    ReplayOptions {
        brokers: kafka.brokers.clone(),
        topic: kafka.topic.clone(),
        group: group.to_owned(),
        from,
        to: None,
        schemas: saga_tracker_core::codec::KnownSchemas::all(),
        kafka_properties: Vec::new(),
    }
}

/// Sends `first`, then (a clear millisecond later) `second`; returns the time between them.
async fn two_batches(
    kafka: &TestKafka,
    first: &[SagaEvent],
    second: &[SagaEvent],
) -> chrono::DateTime<Utc> {
    kafka.send(first).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    kafka.send(second).await;
    between
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_after_a_restart_stores_nothing_twice() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let (a, b) = (sagas("a", 6), sagas("b", 5));
    let between = two_batches(&kafka, &a, &b).await;
    let total = (a.len() + b.len()) as i64;
    let service = Service::start(kafka.config(&db, "replay-test"))
        .await
        .expect("service starts");
    wait_for_events(&service, total).await;
    common::eventually("offsets committed", || async {
        (service.metrics().total_lag() == Some(0)).then_some(())
    })
    .await;
    let store = service.store().clone();
    service.shutdown().await;

    let summary = replay::run(&store, &options(&kafka, "replay-test", between))
        .await
        .expect("replay");
    let rewound: i64 = summary
        .partitions
        .iter()
        .map(|p| p.committed_before.expect("committed") - p.committed_after.expect("rewound"))
        .sum();
    assert_eq!(rewound, b.len() as i64, "{summary:?}");
    for p in &summary.partitions {
        assert_eq!(p.committed_before, Some(p.to_offset), "{p:?}");
    }

    let service = Service::start(kafka.config(&db, "replay-test"))
        .await
        .expect("service restarts");
    common::eventually("the replayed events re-read", || async {
        (service.metrics().duplicate_total() == b.len() as u64).then_some(())
    })
    .await;
    assert_eq!(service.metrics().ingested_total(), 0);
    assert_eq!(service.store().event_count().await.expect("count"), total);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(service.store().pool())
        .await
        .expect("count");
    assert_eq!(rows, 11);
    service.shutdown().await;

    // a range: the command reads it itself; the first batch is stored already
    let mut range = options(&kafka, "replay-test", between - chrono::Duration::hours(1));
    range.to = Some(between);
    let s = replay::run(&store, &range).await.expect("replay range");
    assert_eq!(
        (s.read, s.ingested, s.duplicates),
        (a.len() as u64, 0, a.len() as u64)
    );
    assert!(s.rejected.is_empty());
    // the group was left alone
    assert!(s.partitions.iter().all(|p| p.committed_after.is_none()));
    // a range after everything: nothing
    let mut later = options(
        &kafka,
        "replay-test",
        Utc::now() + chrono::Duration::hours(1),
    );
    later.to = Some(Utc::now() + chrono::Duration::hours(2));
    assert_eq!(replay::run(&store, &later).await.expect("replay").read, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_refuses_while_members_hold_the_group_and_rejects_bad_input() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    kafka.send(&sagas("x", 2)).await;
    let store = saga_tracker_service::Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");

    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", "live-group")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    member.subscribe(&[&kafka.topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while member.assignment().expect("assignment").count() == 0 {
        assert!(std::time::Instant::now() < deadline, "never joined");
        let _ = member.poll(Duration::from_millis(100));
    }
    let err = replay::run(
        &store,
        &options(
            &kafka,
            "live-group",
            Utc::now() - chrono::Duration::hours(1),
        ),
    )
    .await
    .expect_err("live members");
    assert!(matches!(err, OpsError::GroupActive { .. }), "{err}");
    assert!(err.to_string().contains("live-group"), "{err}");
    drop(member);

    let mut bad = options(&kafka, "g", Utc::now());
    bad.to = Some(Utc::now() - chrono::Duration::hours(1));
    let err = replay::run(&store, &bad).await.expect_err("to before from");
    assert_eq!(err.exit_code(), 2, "{err}");
    let mut missing = options(&kafka, "g", Utc::now());
    missing.topic = "no.such.topic".into();
    let err = replay::run(&store, &missing).await.expect_err("no topic");
    assert_eq!(err.exit_code(), 2, "{err}");
}
