//! Events already stored that a batch's sagas do not account for: stored by a writer that takes no saga lock
//! (`restore` loads events before it recomputes their sagas), or under another saga's id (a hostile or buggy
//! producer reusing an event id). The batch writer stores the events it believes new with a `COPY`; such
//! an event makes that `COPY` fail with a unique violation, and the batch must then be written as `ON CONFLICT DO
//! NOTHING` would: the stored event absorbed as a duplicate, every other event stored, no error (an error would
//! send the batch's events to the DLQ).
#![allow(missing_docs)]

mod common;

use common::{SagaBuilder, TestDb};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Store;
use saga_tracker_service::db::IncomingEvent;

fn incoming(e: &saga_tracker_core::SagaEvent, offset: i64) -> IncomingEvent {
    IncomingEvent {
        event: e.clone(),
        topic: "saga.tracker".into(),
        partition: 0,
        offset,
    }
}

async fn stored_sagas_of(store: &Store, ids: &[uuid::Uuid]) -> Vec<String> {
    sqlx::query_scalar("SELECT saga_id FROM saga_events WHERE event_id = ANY($1) ORDER BY event_id")
        .bind(ids)
        .fetch_all(store.pool())
        .await
        .expect("query")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_stored_behind_its_sagas_back_is_absorbed_as_a_duplicate() {
    let db = TestDb::new();
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let saga = SagaBuilder::new("behind", "OrderSaga", 0)
        .ev("order-service", "create_order", Started, 1)
        .ev("order-service", "create_order", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .ev("payment-service", "charge_payment", Succeeded, 1)
        .events;
    let first: Vec<IncomingEvent> = saga[..2]
        .iter()
        .enumerate()
        .map(|(i, e)| incoming(e, i as i64))
        .collect();
    assert_eq!(store.write_batch(&first).await.expect("write"), vec![0, 1]);

    // The third event is stored without the saga's summary (as `restore` inserts), later than its latest event.
    let late = &saga[2];
    sqlx::query(
        "INSERT INTO saga_events (event_id, idempotency_key, saga_id, saga_type, step, status, attempt, service,
             recorded_at, kafka_topic, kafka_partition, kafka_offset)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'saga.tracker', 0, 2)",
    )
    .bind(late.event_id)
    .bind(&late.idempotency_key)
    .bind(&late.saga_id)
    .bind(&late.saga_type)
    .bind(&late.step)
    .bind(late.status.as_str())
    .bind(late.attempt)
    .bind(&late.service)
    .bind(chrono::DateTime::from_timestamp_micros(late.recorded_at).expect("time"))
    .execute(store.pool())
    .await
    .expect("insert");

    // Its redelivery with the next event: the stored one is a duplicate, the next one is new.
    let second = vec![incoming(&saga[2], 2), incoming(&saga[3], 3)];
    let written = store.write(&second).await.expect("write");
    assert_eq!(written.new, vec![1]);
    assert!(written.too_long.is_empty());
    assert_eq!(store.event_count().await.expect("count"), 4);

    // The same batch again: all duplicates.
    let written = store.write(&second).await.expect("write");
    assert!(written.new.is_empty(), "{written:?}");
    assert_eq!(store.event_count().await.expect("count"), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_id_reused_by_another_saga_is_absorbed_and_its_other_events_stored() {
    let db = TestDb::new();
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let a = SagaBuilder::new("owner", "OrderSaga", 0)
        .ev("order-service", "create_order", Started, 1)
        .ev("order-service", "create_order", Succeeded, 1)
        .events;
    assert_eq!(
        store
            .write_batch(&[incoming(&a[0], 0), incoming(&a[1], 1)])
            .await
            .expect("write"),
        vec![0, 1]
    );
    let b = SagaBuilder::new("copycat", "OrderSaga", 0)
        .ev("order-service", "create_order", Started, 1)
        .ev("order-service", "create_order", Succeeded, 1)
        .events;
    // `copycat`'s first event carries the id and time of `owner`'s second one: the same key as a stored event.
    let mut reused = b[0].clone();
    reused.event_id = a[1].event_id;
    reused.recorded_at = a[1].recorded_at;
    for (name, batch) in [
        // a new saga (its events are read back to rebuild its summary: none)
        ("new saga", vec![incoming(&reused, 2), incoming(&b[1], 3)]),
        // and once its row exists, an event later than its latest one
        ("known saga", vec![incoming(&reused, 2), incoming(&b[1], 3)]),
    ] {
        let written = store.write(&batch).await.expect("write");
        let expected: Vec<usize> = if name == "new saga" { vec![1] } else { vec![] };
        assert_eq!(written.new, expected, "{name}");
    }
    let later = SagaBuilder::new("copycat", "OrderSaga", 10)
        .ev("shipping-service", "ship", Started, 1)
        .events;
    let mut reused_later = later[0].clone();
    // a stored key of `owner` again, now later than everything `copycat` holds
    let c = SagaBuilder::new("owner", "OrderSaga", 20)
        .ev("shipping-service", "ship", Started, 1)
        .events;
    assert_eq!(
        store
            .write_batch(&[incoming(&c[0], 4)])
            .await
            .expect("write"),
        vec![0]
    );
    reused_later.event_id = c[0].event_id;
    reused_later.recorded_at = c[0].recorded_at;
    let extra = SagaBuilder::new("copycat", "OrderSaga", 30)
        .ev("shipping-service", "ship", Succeeded, 1)
        .events;
    let written = store
        .write(&[incoming(&reused_later, 5), incoming(&extra[0], 6)])
        .await
        .expect("write");
    assert_eq!(written.new, vec![1]);

    // Every stored key stays with its first saga; `copycat` counts only its own events.
    assert_eq!(
        stored_sagas_of(&store, &[a[1].event_id, c[0].event_id]).await,
        vec!["owner".to_owned(), "owner".to_owned()]
    );
    assert_eq!(store.event_count().await.expect("count"), 5);
    let owner = store.saga("owner").await.expect("query").expect("row");
    assert_eq!(owner.event_count, 3);
    let copycat = store.saga("copycat").await.expect("query").expect("row");
    assert_eq!(copycat.event_count, 2);
}
