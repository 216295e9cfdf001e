//! Ingest a few sagas through MockCluster into PostgreSQL and query every endpoint.

mod common;

use common::conformance::Conformance;
use common::{Api, SagaBuilder, TestDb, TestKafka, eventually, wait_for_events};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Service;
use serde_json::Value;

fn sample_sagas() -> (Vec<SagaBuilder>, usize) {
    let ok = SagaBuilder::new("saga-ok", "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .ev("payment-service", "charge_payment", Succeeded, 1);
    let compensated = SagaBuilder::new("saga-comp", "OrderSaga", 10)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .ev("payment-service", "charge_payment", Failed, 1)
        .ev("order-service", "reserve_stock", CompensationStarted, 1)
        .ev("order-service", "reserve_stock", Compensated, 1);
    let comp_failed = SagaBuilder::new("saga-compfail", "RefundSaga", 20)
        .ev("product-service", "release", Started, 1)
        .ev("product-service", "release", Succeeded, 1)
        .ev("payment-service", "refund", Started, 1)
        .ev("payment-service", "refund", Failed, 1)
        .ev("product-service", "release", CompensationStarted, 1)
        .ev("product-service", "release", CompensationFailed, 1);
    let running = SagaBuilder::new("saga-running", "OrderSaga", 30).ev(
        "order-service",
        "reserve_stock",
        Started,
        1,
    );
    let sagas = vec![ok, compensated, comp_failed, running];
    let n = sagas.iter().map(|s| s.events.len()).sum();
    (sagas, n)
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_and_query_every_endpoint() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let (sagas, n) = sample_sagas();
    // Out of order: every saga's events are sent newest first.
    for s in &sagas {
        let mut events = s.events.clone();
        events.reverse();
        kafka.send(&events).await;
    }
    let service = Service::start(kafka.config(&db, "api-test"))
        .await
        .expect("service starts");
    wait_for_events(&service, n as i64).await;
    let api = Api::new(&service, None);
    // every response below is checked against the service's own OpenAPI document
    let checked = Conformance::fetch(&api).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut ok = async |path: &str| {
        seen.insert(common::conformance::template_of(path));
        checked.ok(&api, path).await
    };

    // summary
    let saga = ok("/api/v1/sagas/saga-ok").await;
    assert_eq!(saga["status"], "SUCCEEDED");
    assert_eq!(saga["saga_type"], "OrderSaga");
    assert_eq!(saga["event_count"], 4);
    assert_eq!(saga["order_id"], "order-saga-ok");
    assert_eq!(
        saga["services"],
        serde_json::json!(["order-service", "payment-service"])
    );
    let comp = ok("/api/v1/sagas/saga-comp").await;
    assert_eq!(comp["status"], "COMPENSATED");
    assert_eq!(comp["failed_step"], "charge_payment");
    assert_eq!(
        ok("/api/v1/sagas/saga-compfail").await["status"],
        "COMPENSATION_FAILED"
    );
    assert_eq!(ok("/api/v1/sagas/saga-running").await["status"], "RUNNING");

    // timeline: ordered by time, the failure linked to both compensation events
    let timeline = ok("/api/v1/sagas/saga-comp/timeline").await;
    let events = timeline["events"].as_array().expect("events");
    let expected: Vec<String> = sagas[1]
        .events
        .iter()
        .map(|e| e.event_id.to_string())
        .collect();
    let got: Vec<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(got, expected);
    assert_eq!(events[3]["status"], "FAILED");
    assert_eq!(events[3]["error_kind"], "Declined");
    assert_eq!(
        events[3]["triggered_compensations"],
        serde_json::json!([expected[4], expected[5]])
    );
    assert_eq!(events[4]["triggered_by"], expected[3]);
    assert_eq!(events[5]["triggered_by"], expected[3]);
    assert_eq!(
        events[0]["metadata"]["traceId"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(timeline["saga"]["status"], "COMPENSATED");

    // search
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|s| s["saga_id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(
        ids(&ok("/api/v1/sagas").await),
        vec!["saga-running", "saga-compfail", "saga-comp", "saga-ok"]
    );
    assert_eq!(
        ids(&ok("/api/v1/sagas?type=RefundSaga").await),
        vec!["saga-compfail"]
    );
    assert_eq!(
        ids(&ok("/api/v1/sagas?status=compensated").await),
        vec!["saga-comp"]
    );
    assert_eq!(
        ids(&ok("/api/v1/sagas?step=charge_payment").await),
        vec!["saga-comp", "saga-ok"]
    );
    assert_eq!(
        ids(&ok("/api/v1/sagas?service=product-service").await),
        vec!["saga-compfail"]
    );
    assert_eq!(
        ids(&ok("/api/v1/sagas?from=2024-11-24T00:00:05Z&to=2024-11-24T00:00:25Z").await),
        vec!["saga-compfail", "saga-comp"]
    );
    assert_eq!(
        ids(&ok("/api/v1/sagas?limit=500&cursor=").await).len(),
        4,
        "limit 500 is the largest page; an empty cursor is the first page"
    );
    // keyset pagination walks every saga exactly once
    let mut walked = Vec::new();
    let mut path = "/api/v1/sagas?limit=1".to_owned();
    loop {
        let page = ok(&path).await;
        walked.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/sagas?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        walked,
        vec!["saga-running", "saga-compfail", "saga-comp", "saga-ok"]
    );
    // the console's search box: saga id, order id or trace id
    assert_eq!(ids(&ok("/api/v1/search?q=saga-ok").await), vec!["saga-ok"]);
    assert_eq!(
        ids(&ok("/api/v1/search?q=order-saga-comp").await),
        vec!["saga-comp"]
    );
    assert_eq!(
        ids(&ok("/api/v1/search?q=4bf92f3577b34da6a3ce929d0e0e4736").await),
        vec!["saga-running", "saga-compfail", "saga-comp", "saga-ok"]
    );
    assert_eq!(
        ids(&ok("/api/v1/search?q=nothing").await),
        Vec::<String>::new()
    );
    // the console's overview: these events are from 2024, outside any window
    let overview = ok("/api/v1/overview?minutes=1440").await;
    assert_eq!(overview["bucket_seconds"], 1440);
    assert_eq!(overview["buckets"], serde_json::json!([]));
    assert_eq!(overview["slowest_steps"], serde_json::json!([]));
    assert_eq!(ok("/api/v1/overview").await["bucket_seconds"], 60);
    let stats = ok("/api/v1/stats").await;
    assert_eq!(ok("/healthz").await["status"], "ok");
    assert_eq!(ok("/livez").await["status"], "ok");
    assert_eq!(ok("/readyz").await["status"], "ok");
    let doc = ok("/api/v1/openapi.json").await;

    // errors: each a 400 in the documented shape
    for bad in [
        "limit=0",
        "limit=x",
        "limit=501",
        "status=DONE",
        "from=yesterday",
        "cursor=nothex",
        "bogus=1",
    ] {
        let (status, body) = checked.json(&api, &format!("/api/v1/sagas?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    for bad in [
        "/api/v1/overview?minutes=0",
        "/api/v1/overview?minutes=1441",
        "/api/v1/overview?minutes=x",
        "/api/v1/overview?window=5",
        "/api/v1/search",
        "/api/v1/search?q=",
        "/api/v1/search?q=a%00b",
        "/api/v1/search?q=a&limit=5",
    ] {
        let (status, body) = checked.json(&api, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    for unknown in ["/api/v1/sagas/nope", "/api/v1/sagas/nope/timeline"] {
        let (status, body) = checked.json(&api, unknown).await;
        assert_eq!(status, 404, "{unknown}");
        assert_eq!(body["error"], "not_found");
    }
    let (status, body) = api.json("/api/v1/nothing").await;
    assert_eq!(
        (status, &body["error"]),
        (404, &serde_json::json!("not_found"))
    );

    // stats
    assert_eq!(stats["sagas_total"], 4);
    assert_eq!(stats["events_total"], n as i64);
    assert_eq!(stats["sagas_by_status"]["COMPENSATION_FAILED"], 1);
    assert_eq!(stats["sagas_by_status"]["FAILED"], 0);
    assert_eq!(stats["ingested_since_start"], n as u64);
    assert_eq!(stats["dlq_since_start"], 0);
    // the events are from 2024: the running saga has been silent far longer than 15 minutes
    assert_eq!(stats["stuck_sagas"], 1);

    // metrics: the database gauges arrive with the next background refresh
    let scrape = eventually("the database gauges", || async {
        let (status, text) = checked.get(&api, "/metrics").await;
        assert_eq!(status, 200);
        let scrape = common::prom::parse(&text);
        (common::prom::value(&scrape, "saga_tracker_sagas", &[("status", "SUCCEEDED")])
            == Some(1.0))
        .then_some(scrape)
    })
    .await;
    use common::prom::value;
    assert_eq!(value(&scrape, "saga_tracker_stuck_sagas", &[]), Some(1.0));
    assert_eq!(
        value(
            &scrape,
            "saga_tracker_events_ingested_total",
            &[
                ("saga_type", "OrderSaga"),
                ("step", "charge_payment"),
                ("status", "FAILED")
            ]
        ),
        Some(1.0)
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "saga_tracker_step_duration_seconds"),
        "no duration histogram"
    );
    for path in saga_tracker_service::api::paths::ALL {
        assert!(
            doc["paths"][path].is_object(),
            "{path} not in the OpenAPI document"
        );
    }
    // every documented route was exercised and checked above
    let mut seen: Vec<&str> = seen.into_iter().collect();
    seen.push(saga_tracker_service::api::paths::METRICS);
    seen.sort();
    seen.dedup();
    let mut documented = checked.paths();
    documented.sort();
    assert_eq!(seen, documented);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_protects_the_api_but_not_health_and_metrics() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let (sagas, n) = sample_sagas();
    kafka.send(&sagas[0].events).await;
    let mut config = kafka.config(&db, "auth-test");
    config.api_token = Some("s3cret".into());
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, sagas[0].events.len() as i64).await;
    let _ = n;

    let anonymous = Api::new(&service, None);
    let wrong = Api::new(&service, Some("guess"));
    let right = Api::new(&service, Some("s3cret"));
    for path in [
        "/api/v1/sagas",
        "/api/v1/sagas/saga-ok",
        "/api/v1/sagas/saga-ok/timeline",
        "/api/v1/stats",
        "/api/v1/openapi.json",
        "/api/v1/overview",
        "/api/v1/search?q=saga-ok",
    ] {
        let (status, body) = anonymous.json(path).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(body["error"], "unauthorized");
        assert_eq!(wrong.json(path).await.0, 401, "{path}");
        assert_eq!(right.json(path).await.0, 200, "{path}");
    }
    assert_eq!(anonymous.get("/healthz").await.0, 200);
    assert_eq!(anonymous.get("/metrics").await.0, 200);
    // the console's files are public (they hold no data); `/` leads to them
    let (status, page) = anonymous.get("/ui/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<script type=\"module\" src=\"app.js\">"),
        "{page}"
    );
    let (status, content_type, config) = anonymous.get_typed("/ui/config.json").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let config: Value = serde_json::from_str(&config).expect("json");
    assert_eq!(config["traceUrlTemplate"], Value::Null);
    assert!(
        config["terminalStates"]
            .as_array()
            .is_some_and(|s| s.contains(&"COMPENSATED".into()))
    );
    assert_eq!(anonymous.get("/ui/nope.js").await.0, 404);
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for from in ["/", "/ui"] {
        let r = plain
            .get(format!("{}{from}", anonymous.base))
            .send()
            .await
            .expect("GET");
        assert!(r.status().is_redirection(), "{from}: {}", r.status());
        assert_eq!(r.headers()["location"], "/ui/", "{from}");
    }
    let r = plain
        .get(format!("{}/ui/", anonymous.base))
        .send()
        .await
        .expect("GET /ui/");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_split_across_batches_in_reverse_order_give_the_right_state() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let service = Service::start(kafka.config(&db, "order-test"))
        .await
        .expect("service starts");
    let saga = SagaBuilder::new("saga-late", "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .ev("payment-service", "charge_payment", Failed, 1)
        .ev("order-service", "reserve_stock", CompensationStarted, 1);
    let api = Api::new(&service, None);
    let e = &saga.events;
    // one event per batch, in an order no producer would choose: the state after each batch is the state of
    // the set of events stored so far
    let steps = [
        (&e[1], "SUCCEEDED"),    // reserve SUCCEEDED before its STARTED
        (&e[0], "SUCCEEDED"),    // reserve STARTED
        (&e[3], "FAILED"),       // charge FAILED before its STARTED
        (&e[4], "COMPENSATING"), // compensation of reserve
        (&e[2], "COMPENSATING"), // charge STARTED, late
    ];
    for (i, (event, expected)) in steps.iter().enumerate() {
        kafka.send(std::slice::from_ref(*event)).await;
        wait_for_events(&service, i as i64 + 1).await;
        assert_eq!(
            api.ok("/api/v1/sagas/saga-late").await["status"],
            *expected,
            "after {} events",
            i + 1
        );
    }
    let summary = api.ok("/api/v1/sagas/saga-late").await;
    assert_eq!(
        summary["pending_compensations"],
        serde_json::json!(["reserve_stock"])
    );
    assert_eq!(summary["failed_step"], "charge_payment");
    assert_eq!(summary["started_at"], "2024-11-24T00:00:00.001Z");
    service.shutdown().await;
}
