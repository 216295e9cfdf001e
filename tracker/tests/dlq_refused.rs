//! When the DLQ topic refuses a dead letter: a permanent refusal (too large for it, not authorized, invalid record,
//! unknown topic) keeps the message in `saga_dlq_local` (counted) and ingestion goes on; `dlq redrive` places it
//! later. A transient failure (here: the broker answering every Produce with a retriable error) is retried, the
//! partition waits and is reported stalled, and nothing is lost. Faults are injected into the MockCluster; these
//! tests are skipped against a real broker.

mod common;

use std::time::Duration;

use common::{Api, SagaBuilder, TestDb, TestKafka, header, wait_for_events};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::ingest::dlq::headers;
use saga_tracker_service::ops::redrive::{self, RedriveOptions};
use saga_tracker_service::{Service, Store};

const KEY: &str = "refused-key";

/// One event of a fresh saga, all on [`KEY`] (one partition).
async fn send_good(kafka: &TestKafka, saga_id: &str) {
    let e = SagaBuilder::new(saga_id, "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Started, 1)
        .events
        .remove(0);
    kafka
        .send_raw(KEY, &saga_tracker_core::codec::encode(&e))
        .await;
}

/// A message that does not decode (`bad_magic`), with a header of its own.
async fn send_junk(kafka: &TestKafka, payload: &[u8]) -> i64 {
    let h = OwnedHeaders::new().insert(Header {
        key: "traceparent",
        value: Some(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".as_slice()),
    });
    let delivery = kafka
        .producer
        .send(
            FutureRecord::to(&kafka.topic)
                .key(KEY)
                .payload(payload)
                .headers(h),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
    delivery.offset
}

fn redrive_options(kafka: &TestKafka) -> RedriveOptions {
    RedriveOptions {
        brokers: kafka.brokers.clone(),
        dlq_topic: kafka.dlq_topic.clone(),
        group: "refused-redrive".into(),
        reason: None,
        schemas: saga_tracker_core::codec::KnownSchemas::all(),
        kafka_properties: Vec::new(),
    }
}

async fn local_rows(store: &Store) -> Vec<saga_tracker_service::db::LocalDeadLetter> {
    store.local_dead_letters(0, 100).await.expect("rows")
}

async fn wait_for_local(store: &Store, n: usize) -> Vec<saga_tracker_service::db::LocalDeadLetter> {
    common::eventually(&format!("{n} kept dead letters"), || async {
        let rows = local_rows(store).await;
        (rows.len() >= n).then_some(rows)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_too_large_for_the_dlq_topic_is_kept_in_postgres_and_redriven() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let junk = vec![b'x'; 10_000];
    send_good(&kafka, "large-before").await;
    let junk_offset = send_junk(&kafka, &junk).await;
    send_good(&kafka, "large-after").await;

    // the DLQ producer may send at most 4 KB: the 10 KB dead letter (plus its headers) never fits
    let mut config = kafka.config(&db, "refused-large");
    config.kafka_properties = vec![("message.max.bytes".into(), "4096".into())];
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, 2).await;
    let rows = wait_for_local(service.store(), 1).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.reason.as_str(), row.cause.as_str()),
        ("bad_magic", "too_large")
    );
    assert_eq!(row.payload.as_deref(), Some(junk.as_slice()));
    assert_eq!(row.key.as_deref(), Some(KEY.as_bytes()));
    assert_eq!(
        (row.source_topic.as_str(), row.source_offset),
        (kafka.topic.as_str(), junk_offset)
    );
    assert_eq!(row.headers.len(), 1);
    assert_eq!(row.headers[0].0, b"traceparent");
    assert!(
        row.produce_error.to_lowercase().contains("too large"),
        "{}",
        row.produce_error
    );
    common::eventually("counted", || async {
        (service.metrics().dlq_local_total() == 1 && service.metrics().dlq_total() == 1)
            .then_some(())
    })
    .await;
    let api = Api::new(&service, None);
    let (_, metrics) = api.get("/metrics").await;
    assert!(
        metrics.contains(r#"saga_tracker_dlq_local_messages_total{cause="too_large"} 1"#),
        "{metrics}"
    );
    assert_eq!(api.ok("/healthz").await["status"], "ok", "nothing waits");

    // ingestion goes on
    send_good(&kafka, "large-later").await;
    wait_for_events(&service, 3).await;
    service.shutdown().await;

    // the DLQ topic accepts it now (no size limit on this producer): redrive moves it there
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let s = redrive::run(&store, &redrive_options(&kafka))
        .await
        .expect("redrive");
    assert_eq!(
        (s.local_read, s.local_to_topic, s.local_kept),
        (1, 1, 0),
        "{s:?}"
    );
    assert_eq!(s.still_dead, [("bad_magic".to_owned(), 1)].into());
    assert_eq!(store.local_dead_letter_count().await.expect("count"), 0);
    let dead = kafka.read_dlq(1);
    assert_eq!(dead.len(), 1);
    let m = &dead[0];
    assert_eq!(m.payload(), Some(junk.as_slice()));
    assert_eq!(m.key(), Some(KEY.as_bytes()));
    assert_eq!(header(m, headers::REASON).as_deref(), Some("bad_magic"));
    assert_eq!(
        header(m, headers::OFFSET),
        Some(junk_offset.to_string()),
        "the original offset"
    );
    assert_eq!(
        header(m, headers::TOPIC).as_deref(),
        Some(kafka.topic.as_str())
    );
    assert!(header(m, "traceparent").is_some(), "original headers kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dlq_topic_refusing_authorization_or_the_record_keeps_the_messages_and_goes_on() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let Some(cluster) = kafka.mock() else {
        return; // fault injection needs the mock cluster
    };
    let mut stored = 0;
    let mut service = None;
    for (n, (error, cause)) in [
        (
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
            "not_authorized",
        ),
        (
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD,
            "invalid_record",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(previous) = service.take() {
            Service::shutdown(previous).await;
        }
        send_good(&kafka, &format!("refused-before-{n}")).await;
        let payload = format!("junk {n}");
        let offset = send_junk(&kafka, payload.as_bytes()).await;
        send_good(&kafka, &format!("refused-after-{n}")).await;
        // the next Produce request is the DLQ producer's (everything above is acknowledged)
        cluster.request_errors(RDKafkaApiKey::Produce, &[error]);
        let started = Service::start(kafka.config(&db, "refused-auth"))
            .await
            .expect("service starts");
        stored += 2;
        wait_for_events(&started, stored).await;
        let rows = wait_for_local(started.store(), n + 1).await;
        let row = &rows[n];
        assert_eq!(
            (
                row.source_offset,
                row.cause.as_str(),
                row.payload.as_deref()
            ),
            (offset, cause, Some(payload.as_bytes())),
            "{rows:?}"
        );
        common::eventually("counted", || async {
            (started.metrics().dlq_local_total() == 1).then_some(())
        })
        .await;
        let (_, metrics) = Api::new(&started, None).get("/metrics").await;
        let line = format!("saga_tracker_dlq_local_messages_total{{cause=\"{cause}\"}} 1");
        assert!(metrics.contains(&line), "{metrics}");
        service = Some(started);
    }
    let service = service.expect("started");

    // the topic takes the next dead letter again
    let third = send_junk(&kafka, b"junk three").await;
    send_good(&kafka, "refused-later").await;
    wait_for_events(&service, stored + 1).await;
    let dead = kafka.read_dlq(1);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload(), Some(b"junk three".as_slice()));
    assert_eq!(header(&dead[0], headers::OFFSET), Some(third.to_string()));
    assert_eq!(local_rows(service.store()).await.len(), 2);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_dlq_topic_keeps_the_message_until_redrive() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let Some(cluster) = kafka.mock() else {
        return;
    };
    send_good(&kafka, "unknown-before").await;
    let offset = send_junk(&kafka, b"junk for a missing topic").await;
    send_good(&kafka, "unknown-after").await;
    // the brokers say the DLQ topic does not exist (auto-create off)
    cluster
        .topic_error(
            &kafka.dlq_topic,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        )
        .expect("topic error");
    let mut config = kafka.config(&db, "refused-unknown");
    config.kafka_properties = vec![("topic.metadata.propagation.max.ms".into(), "500".into())];
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, 2).await;
    let rows = wait_for_local(service.store(), 1).await;
    assert_eq!(
        (rows[0].source_offset, rows[0].cause.as_str()),
        (offset, "unknown_topic"),
        "{rows:?}"
    );
    send_good(&kafka, "unknown-later").await;
    wait_for_events(&service, 3).await;
    service.shutdown().await;

    // the topic exists again
    cluster
        .topic_error(&kafka.dlq_topic, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .expect("topic error cleared");
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let s = redrive::run(&store, &redrive_options(&kafka))
        .await
        .expect("redrive");
    assert_eq!((s.local_read, s.local_to_topic), (1, 1), "{s:?}");
    assert_eq!(store.local_dead_letter_count().await.expect("count"), 0);
    let dead = kafka.read_dlq(1);
    assert_eq!(
        dead[0].payload(),
        Some(b"junk for a missing topic".as_slice())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transient_dlq_failure_is_retried_the_stall_reported_and_nothing_lost() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let Some(cluster) = kafka.mock() else {
        return;
    };
    send_good(&kafka, "transient-before").await;
    let offset = send_junk(&kafka, b"junk while the DLQ is unwell").await;
    send_good(&kafka, "transient-after").await;
    // every Produce is answered with a retriable error until the test clears them
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 100_000],
    );
    let mut config = kafka.config(&db, "refused-transient");
    config.stall_after_seconds = 1;
    // librdkafka gives up on a message after 500 ms (MessageTimedOut, transient): the service retries it
    config.kafka_properties = vec![("message.timeout.ms".into(), "500".into())];
    let service = Service::start(config).await.expect("service starts");
    let api = Api::new(&service, None);
    common::eventually("the stall reported, the DLQ produce retried", || async {
        let body = api.ok("/healthz").await;
        (body["status"] == "degraded" && service.metrics().errors_total("dlq") >= 2).then_some(())
    })
    .await;
    assert_eq!(service.metrics().dlq_total(), 0);
    assert_eq!(
        service
            .store()
            .local_dead_letter_count()
            .await
            .expect("count"),
        0,
        "a transient failure is not kept locally"
    );

    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    common::eventually("dead-lettered once the broker recovers", || async {
        (service.metrics().dlq_total() == 1).then_some(())
    })
    .await;
    wait_for_events(&service, 2).await;
    common::eventually("healthy again", || async {
        (api.ok("/healthz").await["status"] == "ok").then_some(())
    })
    .await;
    let dead = kafka.read_dlq(1);
    assert!(!dead.is_empty());
    assert!(dead.iter().all(|m| {
        m.payload() == Some(b"junk while the DLQ is unwell".as_slice())
            && header(m, headers::OFFSET) == Some(offset.to_string())
    }));
    assert_eq!(
        service
            .store()
            .local_dead_letter_count()
            .await
            .expect("count"),
        0
    );
    assert_eq!(service.metrics().dlq_local_total(), 0);
    service.shutdown().await;
}
