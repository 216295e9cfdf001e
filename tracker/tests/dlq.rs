//! Messages that do not decode (or cannot be stored) go to the DLQ with the reason and their origin; ingestion
//! continues with the messages after them.

mod common;

use common::{SagaBuilder, TestDb, TestKafka, header, wait_for_events};
use rdkafka::message::Message;
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Service;
use saga_tracker_service::ingest::dlq::headers;

#[tokio::test(flavor = "multi_thread")]
async fn bad_messages_go_to_the_dlq_and_ingestion_continues() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let good = SagaBuilder::new("saga-dlq", "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .events;
    let valid = saga_tracker_core::codec::encode(&good[0]);
    let mut unknown_fingerprint = valid.clone();
    unknown_fingerprint[2] ^= 0xff;
    let truncated = valid[..valid.len() - 5].to_vec();
    let mut nul = good[0].clone();
    nul.event_id = uuid::Uuid::now_v7();
    nul.step = "bad\0step".into();
    let nul = saga_tracker_core::codec::encode(&nul);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("bad_magic", b"{\"json\": true}".to_vec()),
        ("unknown_fingerprint", unknown_fingerprint),
        ("truncated", truncated),
        ("invalid_event", nul),
        ("empty", Vec::new()),
    ];
    // all on the saga's key, so they share a partition with the good events, interleaved
    kafka.send(&good[..1]).await;
    for (_, payload) in &bad {
        kafka.send_raw("saga-dlq", payload).await;
    }
    kafka.send(&good[1..]).await;

    let service = Service::start(kafka.config(&db, "dlq-test"))
        .await
        .expect("service starts");
    wait_for_events(&service, good.len() as i64).await;
    let dead = kafka.read_dlq(bad.len());
    assert_eq!(dead.len(), bad.len());
    for (m, (reason, payload)) in dead.iter().zip(&bad) {
        assert_eq!(header(m, headers::REASON).as_deref(), Some(*reason));
        assert!(header(m, headers::ERROR).is_some_and(|e| !e.is_empty()));
        assert_eq!(
            header(m, headers::TOPIC).as_deref(),
            Some(kafka.topic.as_str())
        );
        let partition: i32 = header(m, headers::PARTITION)
            .expect("partition")
            .parse()
            .expect("number");
        let offset: i64 = header(m, headers::OFFSET)
            .expect("offset")
            .parse()
            .expect("number");
        assert!((0..common::PARTITIONS).contains(&partition));
        assert!(offset >= 1, "the bad messages follow the first good one");
        assert_eq!(
            m.payload().unwrap_or_default(),
            payload.as_slice(),
            "payload kept unchanged"
        );
        assert_eq!(m.key(), Some(b"saga-dlq".as_slice()));
    }
    common::eventually("DLQ counted", || async {
        (service.metrics().dlq_total() == bad.len() as u64).then_some(())
    })
    .await;
    let api = common::Api::new(&service, None);
    assert_eq!(api.ok("/api/v1/sagas/saga-dlq").await["status"], "RUNNING");
    let (_, metrics) = api.get("/metrics").await;
    assert!(
        metrics.contains(r#"saga_tracker_dlq_messages_total{reason="bad_magic"} 1"#),
        "{metrics}"
    );

    // still consuming after the bad input
    let later = SagaBuilder::new("saga-after", "OrderSaga", 5)
        .ev("order-service", "reserve_stock", Started, 1)
        .events;
    kafka.send(&later).await;
    wait_for_events(&service, good.len() as i64 + 1).await;
    service.shutdown().await;
}
