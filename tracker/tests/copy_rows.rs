//! The batch writer stores new events with a binary `COPY`, and falls back to `INSERT ... ON CONFLICT DO NOTHING`
//! when the batch holds an event stored behind its saga's back: both must store the same values, column by column
//! (NULLs, times, JSON metadata, text with quotes, tabs, newlines, backslashes and non-ASCII characters).
#![allow(missing_docs)]

mod common;

use std::collections::BTreeMap;

use common::{SagaBuilder, TestDb};
use saga_tracker_core::{StepError, StepStatus::*};
use saga_tracker_service::Store;
use saga_tracker_service::db::IncomingEvent;

fn incoming(e: &saga_tracker_core::SagaEvent, offset: i64) -> IncomingEvent {
    IncomingEvent {
        event: e.clone(),
        topic: "saga.tracker".into(),
        partition: 3,
        offset,
    }
}

fn events() -> Vec<saga_tracker_core::SagaEvent> {
    let mut events = SagaBuilder::new("copy-\"quoted\"\t\\ saga ü", "OrderSaga", 0)
        .ev("order-service", "create_order", Started, 1)
        .ev("order-service", "create_order", Succeeded, 1)
        .v2(0, 3, true)
        .ev("payment-service", "charge\npayment", Failed, 2)
        .v2(1, 3, false)
        .ev("order-service", "create_order", CompensationStarted, 1)
        .ev("order-service", "create_order", Compensated, 1)
        .events;
    events[0].order_id = None;
    events[0].metadata = BTreeMap::new();
    events[0].recorded_at = -1_234_567; // before 1970, between two microseconds of a second
    events[1].metadata = BTreeMap::from([
        ("traceId".to_owned(), "a\"b\\c\td\ne ✓".to_owned()),
        ("empty".to_owned(), String::new()),
    ]);
    events[2].error = Some(StepError::new("Declined\\", "card \"declined\"\r\n\tü"));
    events[3].cause_idempotency_key = Some("cause\\key".to_owned());
    events[3].duration_micros = Some(i64::MAX);
    events
}

async fn rows(store: &Store) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT (to_jsonb(e) - 'ingested_at')::text FROM saga_events e ORDER BY event_id",
    )
    .fetch_all(store.pool())
    .await
    .expect("rows")
}

#[tokio::test(flavor = "multi_thread")]
async fn copied_and_inserted_events_hold_the_same_values() {
    let events = events();
    let batch: Vec<IncomingEvent> = events
        .iter()
        .enumerate()
        .map(|(i, e)| incoming(e, i as i64))
        .collect();

    // COPY: every event is new.
    let db = TestDb::new();
    let copied = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    assert_eq!(
        copied.write(&batch).await.expect("write").new,
        vec![0, 1, 2, 3, 4]
    );

    // INSERT: an event of another saga stored with the id and time of the last one makes the COPY fail; the batch
    // is written again with INSERT ... ON CONFLICT DO NOTHING (the last event absorbed).
    let db2 = TestDb::new();
    let inserted = Store::connect(&db2.url, Some(&db2.schema), 2)
        .await
        .expect("store");
    let mut blocker = events[4].clone();
    blocker.saga_id = "blocker".to_owned();
    assert_eq!(
        inserted
            .write(&[incoming(&blocker, 9)])
            .await
            .expect("write")
            .new,
        vec![0]
    );
    assert_eq!(
        inserted.write(&batch).await.expect("write").new,
        vec![0, 1, 2, 3]
    );
    let by_insert = rows(&inserted).await;
    let by_copy = rows(&copied).await;
    assert_eq!(by_copy.len(), 5);
    assert_eq!(by_insert.len(), 5);
    // the first four: the same rows; the fifth is the blocker's in `inserted`
    assert_eq!(by_copy[..4], by_insert[..4]);
    assert!(by_insert[4].contains("\"blocker\""), "{}", by_insert[4]);
}
