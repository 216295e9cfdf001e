//! Schema v2 on real PostgreSQL and the Kafka protocol: a mixed fleet (v1 and v2 writers on one topic) and the
//! saga lifecycle the v2 fields make possible (COMPLETED, FAILED, COMPENSATING while owed, stuck between steps).

mod common;

use apache_avro::{Schema, to_avro_datum, to_value};
use common::{Api, SagaBuilder, TestDb, TestKafka, header, wait_for_events};
use saga_tracker_core::codec::{Framing, KnownSchemas, RegistryIds};
use saga_tracker_core::schema::{FINGERPRINT_V1, SCHEMA_V1_JSON, SINGLE_OBJECT_MAGIC};
use saga_tracker_core::{SagaEvent, StepStatus::*, codec};
use saga_tracker_service::ops::redrive::{self, RedriveOptions};
use saga_tracker_service::{Service, Store};

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
    // A writer newer than this build (a "v3" fingerprint it has never seen): the event is dead-lettered, never
    // a panic or a drop, and what the tracker knows keeps being ingested. (A tracker limited to v1 facing real
    // v2 writers: `a_v1_only_tracker_dead_letters_v2_events_...` below.)
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

/// The v2 messages of the fastavro golden vectors (`scripts/gen-vectors-v2`): v2 bytes from an independent writer.
fn fastavro_v2_messages() -> Vec<(String, Vec<u8>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/vectors/saga_tracker_v2.json"
    );
    let text = std::fs::read_to_string(path).expect("v2 vectors");
    let vectors: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    vectors["valid"]
        .as_array()
        .expect("valid vectors")
        .iter()
        .map(|v| {
            let bytes = hex::decode(v["single_object_hex"].as_str().expect("hex")).expect("hex");
            let saga_id = v["event"]["sagaId"].as_str().expect("saga id").to_owned();
            (saga_id, bytes)
        })
        .collect()
}

fn redrive_options(kafka: &TestKafka, group: &str, schemas: KnownSchemas) -> RedriveOptions {
    RedriveOptions {
        brokers: kafka.brokers.clone(),
        dlq_topic: kafka.dlq_topic.clone(),
        group: group.into(),
        reason: None,
        schemas,
        kafka_properties: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_v1_only_tracker_dead_letters_v2_events_as_unknown_fingerprint_and_a_redrive_stores_them()
{
    // The reverse direction of the mixed fleet: a tracker not upgraded yet (it reads v1 only) and services
    // already writing v2 (our SDK's codec, and fastavro's v2 vectors) on one topic.
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let v2_saga = SagaBuilder::new("v2-finished", "OrderSaga", 0)
        .ev("order-service", "reserve", Started, 1)
        .v2(0, 1, false)
        .ev("order-service", "reserve", Succeeded, 1)
        .v2(0, 1, false);
    let v1_saga = SagaBuilder::new("v1-running", "OrderSaga", 10)
        .ev("order-service", "reserve", Started, 1)
        .ev("order-service", "reserve", Succeeded, 1);
    let mut v2_messages: Vec<(String, Vec<u8>)> = v2_saga
        .events
        .iter()
        .map(|e| (e.saga_id.clone(), codec::encode(e)))
        .collect();
    v2_messages.extend(fastavro_v2_messages());
    let mut v2_event_ids = std::collections::BTreeSet::new();
    for (key, bytes) in &v2_messages {
        v2_event_ids.insert(codec::decode(bytes).expect("v2 decodes").event_id);
        kafka.send_raw(key, bytes).await;
    }
    for e in &v1_saga.events {
        kafka.send_raw(&e.saga_id, &v1_writer(e)).await;
    }

    let mut config = kafka.config(&db, "v1-only");
    config.known_schema_versions = vec![1];
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, 2).await;
    let dlq = kafka.read_dlq(v2_messages.len());
    assert_eq!(
        dlq.len(),
        v2_messages.len(),
        "every v2 event is dead-lettered"
    );
    for m in &dlq {
        assert_eq!(
            header(m, "dlq.reason").as_deref(),
            Some("unknown_fingerprint")
        );
        let error = header(m, "dlq.error").unwrap_or_default();
        assert!(
            error.contains("f5500e0a1fcefdfe") && error.contains("known: 4ea4c63af7f12518 (v1)"),
            "{error}"
        );
    }
    let api = Api::new(&service, None);
    assert_eq!(
        api.ok("/api/v1/sagas/v1-running").await["status"],
        "SUCCEEDED"
    );
    let counted = format!(
        r#"saga_tracker_dlq_messages_total{{reason="unknown_fingerprint"}} {}"#,
        v2_messages.len()
    );
    // counted right after the DLQ acknowledged each message
    common::eventually(&counted, || async {
        let (_, metrics) = api.get("/metrics").await;
        metrics.contains(&counted).then_some(())
    })
    .await;
    service.shutdown().await;

    // The tracker learns v2: a re-drive stores every dead-lettered event.
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let s = redrive::run(
        &store,
        &redrive_options(&kafka, "redrive-v2", KnownSchemas::all()),
    )
    .await
    .expect("redrive");
    assert_eq!(s.read, v2_messages.len() as u64);
    assert!(s.still_dead.is_empty(), "{s:?}");
    assert_eq!(s.ingested, v2_event_ids.len() as u64, "{s:?}");
    assert_eq!(
        store.event_count().await.expect("count"),
        2 + v2_event_ids.len() as i64
    );
    let saga = store
        .saga("v2-finished")
        .await
        .expect("query")
        .expect("saga");
    assert_eq!(saga.status.as_str(), "COMPLETED");
}

/// Confluent framing: `00`, the schema id (big-endian), the datum.
fn confluent(schema_id: u32, single_object: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(&single_object[10..]);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn confluent_framed_v1_and_v2_decode_by_registry_id_and_an_unmapped_id_is_dead_lettered() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let v1 = SagaBuilder::new("confluent-v1", "OrderSaga", 0)
        .ev("order-service", "reserve", Started, 1)
        .ev("order-service", "reserve", Succeeded, 1);
    let v2 = SagaBuilder::new("confluent-v2", "OrderSaga", 10)
        .ev("order-service", "reserve", Started, 1)
        .v2(0, 1, false)
        .ev("order-service", "reserve", Succeeded, 1)
        .v2(0, 1, false);
    let unmapped = SagaBuilder::new("confluent-unmapped", "OrderSaga", 20)
        .ev("order-service", "reserve", Started, 1)
        .v2(0, 2, false);
    for e in &v1.events {
        kafka
            .send_raw(&e.saga_id, &confluent(17, &v1_writer(e)))
            .await;
    }
    for e in &v2.events {
        let framed = codec::encode_framed(e, Framing::Confluent { schema_id: 18 });
        kafka.send_raw(&e.saga_id, &framed).await;
    }
    let framed = codec::encode_framed(&unmapped.events[0], Framing::Confluent { schema_id: 19 });
    kafka.send_raw("confluent-unmapped", &framed).await;
    // single-object messages are still read beside Confluent ones
    let plain = SagaBuilder::new("plain-v2", "OrderSaga", 30)
        .ev("order-service", "reserve", Started, 1)
        .v2(0, 2, false);
    kafka.send(&plain.events).await;

    let mut config = kafka.config(&db, "confluent-ids");
    config.registry_schema_ids = Some("17=1,18=2".parse().expect("ids"));
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, 5).await;
    let api = Api::new(&service, None);
    assert_eq!(
        api.ok("/api/v1/sagas/confluent-v1").await["status"],
        "SUCCEEDED"
    );
    assert_eq!(
        api.ok("/api/v1/sagas/confluent-v2").await["status"],
        "COMPLETED"
    );
    assert_eq!(api.ok("/api/v1/sagas/plain-v2").await["status"], "RUNNING");
    let dlq = kafka.read_dlq(1);
    assert_eq!(dlq.len(), 1);
    assert_eq!(
        header(&dlq[0], "dlq.reason").as_deref(),
        Some("unknown_schema_id")
    );
    let error = header(&dlq[0], "dlq.error").unwrap_or_default();
    assert!(
        error.contains("unknown schema registry id 19") && error.contains("17=v1,18=v2"),
        "{error}"
    );
    common::eventually("the DLQ count", || async {
        (service.metrics().dlq_total() == 1).then_some(())
    })
    .await;
    service.shutdown().await;

    // Once id 19 is registered (as v2), a re-drive stores it.
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let ids: RegistryIds = "17=1,18=2,19=2".parse().expect("ids");
    let schemas = KnownSchemas::all().with_registry_ids(ids).expect("ids");
    let s = redrive::run(&store, &redrive_options(&kafka, "redrive-ids", schemas))
        .await
        .expect("redrive");
    assert_eq!((s.read, s.ingested), (1, 1), "{s:?}");
    assert_eq!(store.event_count().await.expect("count"), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timeline_links_a_compensation_to_its_failure_by_cause_across_clock_skew() {
    // charge failed twice (attempts 1 and 2); the payment service's clock is 10 s ahead of the product
    // service's, so the compensation answering attempt 2 is recorded *before* that failure. Time order would link
    // it to attempt 1; the v2 cause links it to attempt 2.
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let mut saga = SagaBuilder::new("skewed", "OrderSaga", 0)
        .ev("product-service", "reserve", Started, 1)
        .v2(0, 2, true)
        .ev("product-service", "reserve", Succeeded, 1)
        .v2(0, 2, true)
        .ev("payment-service", "charge", Failed, 1)
        .v2(1, 2, true)
        .ev("payment-service", "charge", Failed, 2)
        .v2(1, 2, true)
        .ev("product-service", "reserve", CompensationStarted, 1)
        .v2(0, 2, true)
        .ev("product-service", "reserve", Compensated, 1)
        .v2(0, 2, true);
    let failure_2 = saga.events[3].idempotency_key.clone();
    assert_eq!(failure_2, "skewed:charge:FAILED:2");
    saga.events[3].recorded_at += 10_000_000;
    for e in &mut saga.events[4..] {
        e.cause_idempotency_key = Some(failure_2.clone());
    }
    assert!(saga.events[4].recorded_at < saga.events[3].recorded_at);
    kafka.send(&saga.events).await;
    let service = Service::start(kafka.config(&db, "skew"))
        .await
        .expect("service starts");
    wait_for_events(&service, 6).await;
    let api = Api::new(&service, None);
    let timeline = api.ok("/api/v1/sagas/skewed/timeline").await;
    let events = timeline["events"].as_array().expect("events");
    let id = |n: usize| saga.events[n].event_id.to_string();
    let entry = |n: usize| {
        events
            .iter()
            .find(|e| e["event_id"] == id(n))
            .unwrap_or_else(|| panic!("event {n} in {timeline}"))
    };
    for compensation in [4, 5] {
        assert_eq!(entry(compensation)["triggered_by"], id(3), "{timeline}");
        assert_eq!(
            entry(compensation)["cause_idempotency_key"],
            failure_2.as_str()
        );
    }
    assert_eq!(
        entry(3)["triggered_compensations"],
        serde_json::json!([id(4), id(5)])
    );
    assert!(
        entry(2).get("triggered_compensations").is_none(),
        "{timeline}"
    );
    // the timeline is in recordedAt order: the compensation is listed before the failure it answers
    let position = |n: usize| events.iter().position(|e| e["event_id"] == id(n));
    assert!(position(4) < position(3), "{timeline}");
    assert_eq!(
        api.ok("/api/v1/sagas/skewed").await["status"],
        "COMPENSATED"
    );
    service.shutdown().await;
}
