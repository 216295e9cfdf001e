//! Schema v2 on real PostgreSQL and the Kafka protocol: a mixed fleet (v1 and v2 writers on one topic) and the
//! saga lifecycle the v2 fields make possible (COMPLETED, FAILED, COMPENSATING while owed, stuck between steps).

mod common;

use apache_avro::{Schema, to_avro_datum, to_value};
use common::{Api, SagaBuilder, TestDb, TestKafka, header, wait_for_events};
use saga_tracker_core::schema::{FINGERPRINT_V1, SCHEMA_V1_JSON, SINGLE_OBJECT_MAGIC};
use saga_tracker_core::{SagaEvent, StepStatus::*, codec};
use saga_tracker_service::Service;

/// A service still on the v1 SDK: the event written with the v1 schema by apache-avro, v1 fingerprint.
fn v1_writer(event: &SagaEvent) -> Vec<u8> {
    assert_eq!(event.step_count, None, "a v1 writer cannot carry v2 fields");
    let schema = Schema::parse_str(SCHEMA_V1_JSON).expect("v1 schema");
    let value = to_value(event)
        .expect("to value")
        .resolve(&schema)
        .expect("the event fits v1");
    let mut out = SINGLE_OBJECT_MAGIC.to_vec();
    out.extend_from_slice(&FINGERPRINT_V1);
    out.extend(to_avro_datum(&schema, value).expect("v1 datum"));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_fleet_v1_and_v2_writers_on_one_topic_derive_the_lifecycle() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    // v1 services record reserve and charge, the v2 shipping service records the last of 3 steps.
    let fleet = SagaBuilder::new("fleet-done", "OrderSaga", 0)
        .ev("order-service", "reserve", Started, 1)
        .ev("order-service", "reserve", Succeeded, 1)
        .ev("payment-service", "charge", Started, 1)
        .ev("payment-service", "charge", Succeeded, 1)
        .ev("shipping-service", "ship", Started, 1)
        .v2(2, 3, false)
        .ev("shipping-service", "ship", Succeeded, 1)
        .v2(2, 3, false);
    let v1_only = SagaBuilder::new("v1-only", "OrderSaga", 10)
        .ev("order-service", "reserve", Started, 1)
        .ev("order-service", "reserve", Succeeded, 1);
    let between = SagaBuilder::new("v2-between", "OrderSaga", 20)
        .ev("order-service", "reserve", Started, 1)
        .v2(0, 3, true)
        .ev("order-service", "reserve", Succeeded, 1)
        .v2(0, 3, true);
    let owed = SagaBuilder::new("v2-owed", "OrderSaga", 30)
        .ev("order-service", "reserve", Started, 1)
        .v2(0, 3, true)
        .ev("order-service", "reserve", Succeeded, 1)
        .v2(0, 3, true)
        .ev("payment-service", "charge", Started, 1)
        .v2(1, 3, true)
        .ev("payment-service", "charge", Failed, 1)
        .v2(1, 3, true);
    let compensated = SagaBuilder::new("v2-compensated", "OrderSaga", 40)
        .ev("order-service", "reserve", Started, 1)
        .v2(0, 3, true)
        .ev("order-service", "reserve", Succeeded, 1)
        .v2(0, 3, true)
        .ev("payment-service", "charge", Failed, 1)
        .v2(1, 3, true)
        .ev("order-service", "reserve", CompensationStarted, 1)
        .v2(0, 3, true)
        .ev("order-service", "reserve", Compensated, 1)
        .v2(0, 3, true);
    let first_failed = SagaBuilder::new("v2-first-failed", "OrderSaga", 50)
        .ev("order-service", "reserve", Started, 1)
        .v2(0, 3, true)
        .ev("order-service", "reserve", Failed, 1)
        .v2(0, 3, true);
    let sagas = [fleet, v1_only, between, owed, compensated, first_failed];
    let mut n = 0;
    let mut v1_messages = 0;
    for saga in &sagas {
        for e in &saga.events {
            let bytes = if e.step_count.is_some() {
                codec::encode(e)
            } else {
                v1_messages += 1;
                v1_writer(e)
            };
            kafka.send_raw(&e.saga_id, &bytes).await;
            n += 1;
        }
    }
    assert!(
        v1_messages >= 6 && v1_messages < n,
        "both writers are in the fleet"
    );
    let service = Service::start(kafka.config(&db, "schema-v2"))
        .await
        .expect("service starts");
    wait_for_events(&service, n).await;
    let api = Api::new(&service, None);

    let status = |saga: serde_json::Value| saga["status"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        status(api.ok("/api/v1/sagas/fleet-done").await),
        "COMPLETED"
    );
    assert_eq!(status(api.ok("/api/v1/sagas/v1-only").await), "SUCCEEDED");
    assert_eq!(status(api.ok("/api/v1/sagas/v2-between").await), "RUNNING");
    let owed = api.ok("/api/v1/sagas/v2-owed").await;
    assert_eq!(owed["status"], "COMPENSATING");
    assert_eq!(
        owed["pending_compensations"],
        serde_json::json!(["reserve"])
    );
    assert_eq!(
        status(api.ok("/api/v1/sagas/v2-compensated").await),
        "COMPENSATED"
    );
    assert_eq!(
        status(api.ok("/api/v1/sagas/v2-first-failed").await),
        "FAILED"
    );

    // Every event of both writers is on the timeline.
    let timeline = api.ok("/api/v1/sagas/fleet-done/timeline").await;
    assert_eq!(
        timeline["events"].as_array().map(Vec::len),
        Some(6),
        "{timeline}"
    );

    // Events are from 2024: the saga between two steps and the one owing a compensation are stuck; the
    // finished ones (COMPLETED, SUCCEEDED, COMPENSATED, FAILED) are not.
    let stats = api.ok("/api/v1/stats").await;
    assert_eq!(stats["stuck_sagas"], 2, "{stats}");
    assert_eq!(stats["sagas_by_status"]["COMPLETED"], 1, "{stats}");
    assert_eq!(stats["dlq_since_start"], 0, "{stats}");
    // The database gauges are refreshed in the background: wait for the refresh after the last batch.
    common::eventually("the stuck and COMPLETED gauges", || async {
        let (_, metrics) = api.get("/metrics").await;
        (metrics.contains("saga_tracker_stuck_sagas 2")
            && metrics.contains(r#"saga_tracker_sagas{status="COMPLETED"} 1"#))
        .then_some(())
    })
    .await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_newer_than_the_reader_is_dead_lettered_as_unknown_fingerprint() {
    // The reverse direction: a reader that does not know the writer's version (here a "v3" fingerprint this
    // build has never seen, as v2 is to a v1-only tracker) dead-letters the event, never panics or drops it,
    // and keeps ingesting what it knows.
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let newer = SagaBuilder::new("from-the-future", "OrderSaga", 0)
        .ev("order-service", "reserve", Started, 1)
        .v2(0, 3, true);
    let mut bytes = codec::encode(&newer.events[0]);
    bytes[2..10].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 3]);
    kafka.send_raw("from-the-future", &bytes).await;
    let known =
        SagaBuilder::new("known", "OrderSaga", 10).ev("order-service", "reserve", Started, 1);
    kafka.send_raw("known", &v1_writer(&known.events[0])).await;
    let service = Service::start(kafka.config(&db, "schema-v2-reverse"))
        .await
        .expect("service starts");
    wait_for_events(&service, 1).await;
    let dlq = kafka.read_dlq(1);
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        header(&dlq[0], "dlq.reason").as_deref(),
        Some("unknown_fingerprint")
    );
    let error = header(&dlq[0], "dlq.error").unwrap_or_default();
    assert!(error.contains("deadbeef00000003"), "{error}");
    assert!(error.contains("f5500e0a1fcefdfe (v2)"), "{error}");
    let api = Api::new(&service, None);
    assert_eq!(api.ok("/api/v1/sagas/known").await["status"], "RUNNING");
    service.shutdown().await;
}
