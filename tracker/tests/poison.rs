//! No poison pill, no silent stall: an event the database refuses is dead-lettered alone (the batch is bisected)
//! and the rest of its batch is stored; a transient database failure retries the batch, and a partition held up
//! longer than `--stall-after-seconds` shows in `saga_tracker_partition_stalled` and `/healthz`.

mod common;

use common::proxy::{Proxy, upstream_of};
use common::{Api, SagaBuilder, TestDb, TestKafka, header, wait_for_events};
use rdkafka::message::Message;
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::ingest::dlq::headers;
use saga_tracker_service::{Service, Store};

/// `n` one-event sagas on the same key (one partition), `saga-{i}`.
fn events_on_one_key(prefix: &str, n: usize) -> Vec<saga_tracker_core::SagaEvent> {
    (0..n)
        .flat_map(|i| {
            let mut events = SagaBuilder::new(&format!("{prefix}-{i}"), "OrderSaga", i as i64)
                .ev("order-service", "reserve_stock", Started, 1)
                .events;
            events[0].order_id = Some(format!("order-{prefix}"));
            events
        })
        .collect()
}

async fn send_on_key(kafka: &TestKafka, key: &str, events: &[saga_tracker_core::SagaEvent]) {
    for e in events {
        kafka
            .send_raw(key, &saga_tracker_core::codec::encode(e))
            .await;
    }
}

/// The value of `saga_tracker_partition_stalled` for `partition`, if exported.
fn stalled_gauge(metrics: &str, topic: &str, partition: i32) -> Option<u8> {
    let prefix =
        format!("saga_tracker_partition_stalled{{topic=\"{topic}\",partition=\"{partition}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The partition the producer put `key`'s messages in (read back from the stored events).
async fn partition_of(service: &Service, saga_id: &str) -> i32 {
    sqlx::query_scalar("SELECT kafka_partition FROM saga_events WHERE saga_id = $1 LIMIT 1")
        .bind(saga_id)
        .fetch_one(service.store().pool())
        .await
        .expect("partition")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_error_dead_letters_only_the_offending_event() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    // The schema exists before the service starts, with a rule the ingest validation does not know: the
    // database refuses that event with a data error (SQLSTATE 23514).
    let store = Store::connect(&db.url, Some(&db.schema), 1)
        .await
        .expect("migrate");
    sqlx::query(
        "ALTER TABLE saga_events ADD CONSTRAINT test_no_poison CHECK (step <> 'poison_step')",
    )
    .execute(store.pool())
    .await
    .expect("constraint");

    let before = events_on_one_key("before", 6);
    let after = events_on_one_key("after", 5);
    let mut poison = SagaBuilder::new("poisoned", "OrderSaga", 0)
        .ev("order-service", "poison_step", Started, 1)
        .events;
    send_on_key(&kafka, "one-key", &before).await;
    send_on_key(&kafka, "one-key", &poison).await;
    send_on_key(&kafka, "one-key", &after).await;
    let poison = poison.remove(0);

    let mut config = kafka.config(&db, "poison-test");
    config.batch_linger_ms = 500; // all twelve in one batch
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, 11).await;
    let dead = kafka.read_dlq(1);
    assert_eq!(dead.len(), 1);
    let m = &dead[0];
    assert_eq!(header(m, headers::REASON).as_deref(), Some("db_rejected"));
    let error = header(m, headers::ERROR).expect("dlq.error");
    assert!(
        error.contains("23514") && error.contains("test_no_poison"),
        "the database's message: {error}"
    );
    assert_eq!(
        m.payload(),
        Some(saga_tracker_core::codec::encode(&poison).as_slice())
    );
    let stored_poison: i64 =
        sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE event_id = $1")
            .bind(poison.event_id)
            .fetch_one(store.pool())
            .await
            .expect("count");
    assert_eq!(stored_poison, 0);
    common::eventually("DLQ counted", || async {
        (service.metrics().dlq_total() == 1).then_some(())
    })
    .await;
    // bisected, not retried: at most two failed writes per halving of the batch
    let failed_writes = service.metrics().errors_total("database");
    assert!(
        (1..=2 * 4 + 1).contains(&failed_writes),
        "{failed_writes} failed writes for a batch of 12"
    );
    let api = Api::new(&service, None);
    assert_eq!(api.ok("/healthz").await["status"], "ok");
    let (_, metrics) = api.get("/metrics").await;
    assert!(
        metrics.contains(r#"saga_tracker_dlq_messages_total{reason="db_rejected"} 1"#),
        "{metrics}"
    );

    // the partition moves on
    send_on_key(&kafka, "one-key", &events_on_one_key("later", 2)).await;
    wait_for_events(&service, 13).await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_batch_is_retried_and_the_stall_is_reported() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let mut config = kafka.config(&db, "stall-test");
    config.stall_after_seconds = 1;
    let service = Service::start(config).await.expect("service starts");
    let api = Api::new(&service, None);
    assert_eq!(
        api.ok("/healthz").await,
        serde_json::json!({"status": "ok"})
    );

    // A deployment fault, not a data error (42P01, undefined table): every event would fail the same way, so
    // nothing may be dead-lettered; the batch is retried and the partition reported stalled.
    sqlx::query("ALTER TABLE saga_events RENAME TO saga_events_away")
        .execute(service.store().pool())
        .await
        .expect("rename");
    let events = events_on_one_key("stalled", 3);
    send_on_key(&kafka, "stall-key", &events).await;
    let body = common::eventually("degraded health", || async {
        let body = api.ok("/healthz").await;
        (body["status"] == "degraded").then_some(body)
    })
    .await;
    let reasons = body["reasons"].as_array().expect("reasons");
    assert_eq!(reasons.len(), 1, "{body}");
    assert!(
        reasons[0]
            .as_str()
            .is_some_and(|r| r.contains("stalled") && r.contains(&kafka.topic)),
        "{body}"
    );
    assert_eq!(
        api.ok("/readyz").await["status"],
        "ok",
        "the API still serves"
    );
    let (_, metrics) = api.get("/metrics").await;
    let stalled: Vec<i32> = (0..common::PARTITIONS)
        .filter(|p| stalled_gauge(&metrics, &kafka.topic, *p) == Some(1))
        .collect();
    assert_eq!(stalled.len(), 1, "{metrics}");
    assert!(service.metrics().errors_total("database") >= 1);
    assert_eq!(service.metrics().dlq_total(), 0, "nothing dead-lettered");

    sqlx::query("ALTER TABLE saga_events_away RENAME TO saga_events")
        .execute(service.store().pool())
        .await
        .expect("rename back");
    wait_for_events(&service, 3).await;
    let partition = partition_of(&service, "stalled-0").await;
    assert_eq!(stalled, vec![partition]);
    common::eventually("healthy again", || async {
        (api.ok("/healthz").await["status"] == "ok").then_some(())
    })
    .await;
    let (_, metrics) = api.get("/metrics").await;
    assert_eq!(
        stalled_gauge(&metrics, &kafka.topic, partition),
        Some(0),
        "{metrics}"
    );
    assert_eq!(service.metrics().dlq_total(), 0);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_fails_readiness_not_liveness_and_loses_nothing() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let proxy = Proxy::start(upstream_of(&db.url)).await;
    let mut config = kafka.config(&db, "outage-test");
    config.database_url = proxy.database_url(&db.url);
    config.stall_after_seconds = 1;
    let service = Service::start(config).await.expect("service starts");
    let api = Api::new(&service, None);
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(api.ok(path).await["status"], "ok", "{path}");
    }

    proxy.down();
    let events = events_on_one_key("outage", 4);
    send_on_key(&kafka, "outage-key", &events).await;
    for path in ["/healthz", "/readyz"] {
        let (status, body) = api.json(path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"], "database_unavailable");
        // issue 20.3: the database's error text (addresses, ports, SQLSTATEs, pool internals) stays in the log
        assert_eq!(
            body,
            serde_json::json!({
                "status": "unavailable",
                "error": "database_unavailable",
                "message": saga_tracker_service::api::model::DATABASE_UNAVAILABLE_MESSAGE,
            }),
            "{path}"
        );
        let text = body.to_string();
        for leak in [
            "127.0.0.1",
            "os error",
            "refused",
            "timed out",
            "pool",
            "postgres",
        ] {
            assert!(
                !text.to_lowercase().contains(leak),
                "{path} leaks {leak:?}: {text}"
            );
        }
    }
    assert_eq!(api.ok("/livez").await["status"], "ok");
    common::eventually("the stall reported", || async {
        let (_, metrics) = api.get("/metrics").await;
        (0..common::PARTITIONS)
            .any(|p| stalled_gauge(&metrics, &kafka.topic, p) == Some(1))
            .then_some(())
    })
    .await;

    proxy.up();
    wait_for_events(&service, 4).await;
    assert_eq!(service.metrics().dlq_total(), 0, "nothing dead-lettered");
    assert!(service.metrics().errors_total("database") >= 1);
    common::eventually("ready again", || async {
        (api.ok("/healthz").await["status"] == "ok").then_some(())
    })
    .await;
    assert_eq!(api.ok("/readyz").await["status"], "ok");
    service.shutdown().await;
}

/// An event with every string at its bound (multi-byte characters, so bytes are what counts).
fn event_at_bounds(saga_id: &str, metadata_entries: usize) -> saga_tracker_core::SagaEvent {
    use saga_tracker_core::bounds::*;
    let fill = |prefix: &str, max: usize| {
        let mut s = prefix.to_owned();
        while s.len() + 'é'.len_utf8() <= max {
            s.push('é');
        }
        while s.len() < max {
            s.push('x');
        }
        assert_eq!(s.len(), max);
        s
    };
    let mut e = SagaBuilder::new(saga_id, "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Failed, 1)
        .events
        .remove(0);
    e.saga_id = fill(saga_id, SAGA_ID);
    e.saga_type = fill("Saga", SAGA_TYPE);
    e.step = fill("step", STEP);
    e.service = fill("svc", SERVICE);
    e.order_id = Some(fill("order", ORDER_ID));
    e.idempotency_key = fill("key", IDEMPOTENCY_KEY);
    e.error = Some(saga_tracker_core::StepError::new(
        fill("Kind", ERROR_KIND),
        fill("message", ERROR_MESSAGE),
    ));
    e.metadata.clear();
    let per_entry = METADATA_TOTAL / metadata_entries;
    let key_len = per_entry.min(METADATA_KEY);
    for i in 0..metadata_entries {
        let key = fill(&format!("{i:03}"), key_len);
        let value = fill("v", (per_entry - key_len).min(METADATA_VALUE));
        e.metadata.insert(key, value);
    }
    assert_eq!(saga_tracker_core::bounds::check(&e), Ok(()));
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_event_between_valid_ones_is_dead_lettered_as_too_large() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let before = events_on_one_key("valid-before", 5);
    let after = events_on_one_key("valid-after", 5);
    // the two shapes of the original report: a 3 KB saga id (over the btree index row limit) and a 10 KB step
    let mut huge_id = events_on_one_key("huge-id", 1).remove(0);
    huge_id.saga_id = "i".repeat(3 * 1024);
    let mut huge_step = events_on_one_key("huge-step", 1).remove(0);
    huge_step.step = "s".repeat(10 * 1024);
    let at_bounds = [
        event_at_bounds("bounds-a", 8),
        event_at_bounds("bounds-b", saga_tracker_core::bounds::METADATA_ENTRIES),
    ];
    send_on_key(&kafka, "one-key", &before).await;
    send_on_key(&kafka, "one-key", &[huge_id.clone()]).await;
    send_on_key(&kafka, "one-key", &at_bounds).await;
    send_on_key(&kafka, "one-key", &[huge_step.clone()]).await;
    send_on_key(&kafka, "one-key", &after).await;

    let mut config = kafka.config(&db, "too-large-test");
    config.batch_linger_ms = 500; // one batch
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, 12).await;
    let dead = kafka.read_dlq(2);
    assert_eq!(dead.len(), 2);
    for (m, (event, field)) in dead
        .iter()
        .zip([(&huge_id, "sagaId"), (&huge_step, "step")])
    {
        assert_eq!(header(m, headers::REASON).as_deref(), Some("too_large"));
        let error = header(m, headers::ERROR).expect("dlq.error");
        assert!(error.contains(&format!("`{field}`")), "{error}");
        assert_eq!(
            m.payload(),
            Some(saga_tracker_core::codec::encode(event).as_slice())
        );
    }
    // never reached the database, so never paused: the valid events around the bad ones were stored by one
    // transaction (ingested_at is the transaction's start)
    assert_eq!(service.metrics().errors_total("database"), 0);
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT ingested_at) FROM saga_events")
            .fetch_one(service.store().pool())
            .await
            .expect("count");
    assert_eq!(transactions, 1);
    // every event that passes the bounds is stored, with its saga row, byte for byte
    for e in &at_bounds {
        let (step, message, metadata): (String, String, serde_json::Value) = sqlx::query_as(
            "SELECT step, error_message, metadata FROM saga_events WHERE event_id = $1",
        )
        .bind(e.event_id)
        .fetch_one(service.store().pool())
        .await
        .expect("stored");
        assert_eq!(step, e.step);
        assert_eq!(Some(message), e.error.as_ref().map(|x| x.message.clone()));
        assert_eq!(metadata, serde_json::to_value(&e.metadata).expect("json"));
        let saga = service.store().saga(&e.saga_id).await.expect("query");
        assert_eq!(saga.expect("saga row").status.as_str(), "FAILED");
    }
    let api = Api::new(&service, None);
    let (_, metrics) = api.get("/metrics").await;
    assert!(
        metrics.contains(r#"saga_tracker_dlq_messages_total{reason="too_large"} 2"#),
        "{metrics}"
    );
    service.shutdown().await;
}
