//! Issue 20 points 1, 3 and 6 against a running service (real PostgreSQL, MockCluster): bad requests are JSON
//! 400s checked before the database sees them, database errors stay in the log, `/metrics` labels are capped,
//! and the `/metrics` token and token files work.

mod common;

use common::conformance::Conformance;
use common::{Api, SagaBuilder, TestDb, TestKafka, eventually, wait_for_events};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Service;
use saga_tracker_service::api::model::Cursor;

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_json_400s_before_the_database() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let saga = SagaBuilder::new("saga-1", "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1);
    kafka.send(&saga.events).await;
    let service = Service::start(kafka.config(&db, "hostile-test"))
        .await
        .expect("service starts");
    wait_for_events(&service, 2).await;
    let api = Api::new(&service, None);
    let checked = Conformance::fetch(&api).await;

    let far_past = Cursor {
        started_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        saga_id: "saga-1".into(),
    }
    .encode();
    let nul_cursor = Cursor {
        started_at: chrono::DateTime::from_timestamp_micros(0).expect("epoch"),
        saga_id: "a\0b".into(),
    }
    .encode();
    for bad in [
        "/api/v1/sagas?type=Order%00Saga".to_owned(),
        "/api/v1/sagas?step=%00".to_owned(),
        "/api/v1/sagas?service=svc%00".to_owned(),
        "/api/v1/sagas?limit=501".to_owned(),
        "/api/v1/sagas?limit=-1".to_owned(),
        "/api/v1/sagas?limit=".to_owned(),
        "/api/v1/sagas?type=".to_owned(),
        "/api/v1/sagas?type=a&type=b".to_owned(),
        format!("/api/v1/sagas?cursor={far_past}"),
        format!("/api/v1/sagas?cursor={nul_cursor}"),
        "/api/v1/sagas/saga%00one".to_owned(),
        "/api/v1/sagas/saga%00one/timeline".to_owned(),
        "/api/v1/sagas/%FF%FE".to_owned(),
        "/api/v1/sagas/%FF/timeline".to_owned(),
        "/api/v1/search?q=%00".to_owned(),
        "/api/v1/search?q=a&q=b".to_owned(),
        "/api/v1/overview?minutes=-1".to_owned(),
        "/api/v1/overview?minutes=99999999999".to_owned(),
    ] {
        let (status, body) = checked.json(&api, &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request", "{bad}");
    }
    // the cases that must keep working
    assert_eq!(
        checked.ok(&api, "/api/v1/sagas?cursor=").await["items"][0]["saga_id"],
        "saga-1"
    );
    assert_eq!(
        checked.ok(&api, "/api/v1/sagas?limit=500").await["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(checked.json(&api, "/api/v1/sagas/%E2%9C%93").await.0, 404);
    let empty = checked
        .ok(
            &api,
            "/api/v1/sagas?from=2025-01-01T00:00:00Z&to=0000-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(empty["items"], serde_json::json!([]), "an empty range");
    // nothing above reached the database as an error
    assert_eq!(service.metrics().errors_total("database"), 0);
    // a method the route does not have is a JSON 405
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/sagas", api.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 405);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "method_not_allowed");

    // A real database error (the table is gone) is a 503 whose message says nothing of the database's text.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect");
    sqlx::query(&format!(
        "ALTER TABLE \"{}\".sagas RENAME TO sagas_gone",
        db.schema
    ))
    .execute(&pool)
    .await
    .expect("rename");
    let (status, body) = checked.json(&api, "/api/v1/sagas/saga-1").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "database_unavailable");
    let message = body["message"].as_str().expect("message");
    assert!(
        !message.contains("sagas") && !message.contains("relation"),
        "{message}"
    );
    sqlx::query(&format!(
        "ALTER TABLE \"{}\".sagas_gone RENAME TO sagas",
        db.schema
    ))
    .execute(&pool)
    .await
    .expect("rename back");
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metric_labels_are_capped_and_metrics_can_need_a_token_from_a_file() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    // 2 saga types x 4 steps from the producer; the service keeps 1 type and 2 (type, step) pairs
    let mut n = 0;
    for ty in ["OrderSaga", "RefundSaga"] {
        let mut saga = SagaBuilder::new(&format!("saga-{ty}"), ty, 0);
        for step in ["a", "b", "c", "d"] {
            saga = saga.ev("svc", step, Started, 1);
        }
        n += saga.events.len();
        kafka.send(&saga.events).await;
    }
    let dir = std::env::temp_dir().join(format!("hostile-{}", db.schema));
    std::fs::create_dir_all(&dir).expect("dir");
    let token_file = dir.join("metrics-token");
    std::fs::write(&token_file, "scrape-me\n").expect("write");
    let mut config = kafka.config(&db, "labels-test");
    config.metrics_max_saga_types = 1;
    config.metrics_max_steps = 2;
    config.metrics_token_file = Some(token_file);
    let service = Service::start(config).await.expect("service starts");
    wait_for_events(&service, n as i64).await;

    let anonymous = Api::new(&service, None);
    let (status, body) = anonymous.json("/metrics").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(
        Api::new(&service, Some("guess")).get("/metrics").await.0,
        401
    );
    // the API itself has no token here
    assert_eq!(anonymous.get("/api/v1/stats").await.0, 200);

    let scraper = Api::new(&service, Some("scrape-me"));
    let scrape = eventually("metrics", || async {
        let (status, text) = scraper.get("/metrics").await;
        (status == 200).then(|| common::prom::parse(&text))
    })
    .await;
    let ingested: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "saga_tracker_events_ingested_total")
        .collect();
    let series: std::collections::BTreeSet<(String, String)> = ingested
        .iter()
        .map(|s| {
            (
                s.labels["saga_type"].to_owned(),
                s.labels["step"].to_owned(),
            )
        })
        .collect();
    // The first type seen keeps two steps and the rest as `other`; the second type is `other` entirely.
    assert_eq!(series.len(), 4, "{series:?}");
    assert!(
        series.contains(&("other".into(), "other".into())),
        "{series:?}"
    );
    let first_type = series
        .iter()
        .find(|(t, _)| t != "other")
        .map(|(t, _)| t.clone())
        .expect("an admitted type");
    assert!(
        series.contains(&(first_type.clone(), "other".into())),
        "{series:?}"
    );
    let total: f64 = ingested
        .iter()
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(total, n as f64, "every event is still counted");
    let dropped = |label| {
        common::prom::value(
            &scrape,
            "saga_tracker_metric_label_values_dropped_total",
            &[("label", label)],
        )
    };
    assert_eq!(dropped("saga_type"), Some(4.0));
    assert_eq!(dropped("step"), Some(2.0));
    service.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_token_file_stops_the_start() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let mut config = kafka.config(&db, "token-file-test");
    config.api_token_file = Some("/nonexistent/saga-tracker-token".into());
    let error = Service::start(config).await.expect_err("must not start");
    assert!(
        error
            .to_string()
            .contains("/nonexistent/saga-tracker-token"),
        "{error}"
    );
}
