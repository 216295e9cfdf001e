//! DLQ re-drive: what decodes now is stored, the rest goes back to the DLQ counted per reason, progress is
//! committed.

mod common;

use std::time::Duration;

use common::{SagaBuilder, TestDb, TestKafka, header};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Store;
use saga_tracker_service::db::IncomingEvent;
use saga_tracker_service::ingest::dlq::headers;
use saga_tracker_service::ops::redrive::{self, ATTEMPTS_HEADER, RedriveOptions};

async fn dead_letter(kafka: &TestKafka, payload: &[u8], reason: &str, offset: i64) {
    let offset = offset.to_string();
    let h = OwnedHeaders::new()
        .insert(Header {
            key: "traceparent",
            value: Some("00-abc-def-01"),
        })
        .insert(Header {
            key: headers::REASON,
            value: Some(reason),
        })
        .insert(Header {
            key: headers::ERROR,
            value: Some("as the old tracker saw it"),
        })
        .insert(Header {
            key: headers::TOPIC,
            value: Some(kafka.topic.as_str()),
        })
        .insert(Header {
            key: headers::PARTITION,
            value: Some("1"),
        })
        .insert(Header {
            key: headers::OFFSET,
            value: Some(offset.as_str()),
        });
    kafka
        .producer
        .send(
            FutureRecord::to(&kafka.dlq_topic)
                .key("saga-r")
                .payload(payload)
                .headers(h),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
}

fn options(kafka: &TestKafka, reason: Option<&str>) -> RedriveOptions {
    RedriveOptions {
        brokers: kafka.brokers.clone(),
        dlq_topic: kafka.dlq_topic.clone(),
        group: "redrive-test".into(),
        reason: reason.map(str::to_owned),
        schemas: saga_tracker_core::codec::KnownSchemas::all(),
        kafka_properties: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_of_a_mixed_dlq_ingests_exactly_the_decodable_ones() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let events = SagaBuilder::new("saga-r", "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .events;
    // the first event is stored already (a duplicate must be absorbed, not counted as new)
    store
        .write_batch(&[IncomingEvent {
            event: events[0].clone(),
            topic: kafka.topic.clone(),
            partition: 1,
            offset: 0,
        }])
        .await
        .expect("write");
    let encoded: Vec<Vec<u8>> = events
        .iter()
        .map(saga_tracker_core::codec::encode)
        .collect();
    let mut truncated = encoded[0].clone();
    truncated.truncate(encoded[0].len() - 5);
    // decodable now (dead-lettered by an older tracker that did not know the fingerprint), and not
    dead_letter(&kafka, &encoded[0], "unknown_fingerprint", 0).await;
    dead_letter(&kafka, b"{\"json\": 1}", "bad_magic", 1).await;
    dead_letter(&kafka, &encoded[1], "unknown_fingerprint", 2).await;
    dead_letter(&kafka, &truncated, "truncated", 3).await;
    dead_letter(&kafka, &encoded[2], "malformed", 4).await;

    let s = redrive::run(&store, &options(&kafka, None))
        .await
        .expect("redrive");
    assert_eq!(s.read, 5);
    assert_eq!((s.ingested, s.duplicates), (2, 1));
    assert_eq!(
        s.still_dead,
        [("bad_magic".to_owned(), 1), ("truncated".to_owned(), 1)].into()
    );
    assert!(s.skipped.is_empty());
    assert_eq!(store.event_count().await.expect("count"), 3);
    let origin: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT kafka_topic, kafka_partition, kafka_offset FROM saga_events ORDER BY kafka_offset",
    )
    .fetch_all(store.pool())
    .await
    .expect("rows");
    assert_eq!(
        origin,
        vec![
            (kafka.topic.clone(), 1, 0),
            (kafka.topic.clone(), 1, 2),
            (kafka.topic.clone(), 1, 4)
        ],
        "stored with where they were first read"
    );
    let saga = store.saga("saga-r").await.expect("query").expect("saga");
    assert_eq!((saga.status.as_str(), saga.event_count), ("RUNNING", 3));

    // the two still dead went back to the end of the DLQ, with their reason and an attempt count
    let dlq = kafka.read_dlq(7);
    assert_eq!(dlq.len(), 7);
    for (m, reason) in dlq[5..].iter().zip(["bad_magic", "truncated"]) {
        assert_eq!(header(m, headers::REASON).as_deref(), Some(reason));
        assert_eq!(header(m, ATTEMPTS_HEADER).as_deref(), Some("1"));
        assert_eq!(header(m, "traceparent").as_deref(), Some("00-abc-def-01"));
        assert_ne!(
            header(m, headers::ERROR).as_deref(),
            Some("as the old tracker saw it")
        );
    }

    // run again: only what came back is read (progress committed), nothing stored twice
    let again = redrive::run(&store, &options(&kafka, None))
        .await
        .expect("redrive");
    assert_eq!((again.read, again.ingested, again.duplicates), (2, 0, 0));
    assert_eq!(again.still_dead.values().sum::<u64>(), 2);
    assert_eq!(store.event_count().await.expect("count"), 3);

    // with --reason: the others are sent back unchanged, not tried
    let filtered = redrive::run(&store, &options(&kafka, Some("truncated")))
        .await
        .expect("redrive");
    assert_eq!(filtered.read, 2);
    assert_eq!(filtered.skipped, [("bad_magic".to_owned(), 1)].into());
    assert_eq!(filtered.still_dead, [("truncated".to_owned(), 1)].into());
    let dlq = kafka.read_dlq(11);
    assert_eq!(dlq.len(), 11);
    let attempts: Vec<Option<String>> = dlq[9..]
        .iter()
        .map(|m| header(m, ATTEMPTS_HEADER))
        .collect();
    assert!(
        attempts.contains(&Some("2".into())),
        "the skipped one keeps its count: {attempts:?}"
    );
    assert!(
        attempts.contains(&Some("3".into())),
        "the tried one counts up: {attempts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_of_an_empty_dlq_and_an_unreachable_broker() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let s = redrive::run(&store, &options(&kafka, None))
        .await
        .expect("redrive");
    assert_eq!(s.read, 0);
    let mut bad = options(&kafka, None);
    bad.brokers = "127.0.0.1:1".into();
    bad.kafka_properties = vec![("socket.connection.setup.timeout.ms".into(), "1000".into())];
    let err = redrive::run(&store, &bad).await.expect_err("no broker");
    assert_eq!(err.exit_code(), 2, "{err}");
}
