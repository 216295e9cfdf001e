//! The Grafana dashboard and the Prometheus rules use only metrics the service exports.

mod common;

use std::collections::BTreeSet;

use common::{Api, SagaBuilder, TestDb, TestKafka, eventually, wait_for_events};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Service;

fn deploy_file(path: &str) -> String {
    let full = format!("{}/../deploy/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Every `saga_tracker_*` identifier in `text`.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("saga_tracker_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let preceded_by_ident = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !preceded_by_ident {
            out.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_files_use_exported_metrics() {
    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    // One saga through every status family, and one message for the DLQ, so every metric has a sample.
    let saga = SagaBuilder::new("saga-deploy", "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .ev("payment-service", "charge_payment", Started, 1)
        .ev("payment-service", "charge_payment", Failed, 1)
        .ev("order-service", "reserve_stock", CompensationStarted, 1)
        .ev("order-service", "reserve_stock", Compensated, 1);
    kafka.send(&saga.events).await;
    kafka.send_raw("junk", b"not avro").await;
    let service = Service::start(kafka.config(&db, "deploy-test"))
        .await
        .expect("service starts");
    wait_for_events(&service, saga.events.len() as i64).await;
    let api = Api::new(&service, None);
    // Parsed by a Prometheus text-format parser; lag and the database gauges arrive in the background.
    let exported = eventually("every metric in /metrics", || async {
        let (status, exposition) = api.get("/metrics").await;
        assert_eq!(status, 200);
        let names = common::prom::names(&common::prom::parse(&exposition));
        saga_tracker_service::metrics::ALL
            .iter()
            .all(|m| {
                names.contains(*m) || *m == saga_tracker_service::metrics::LABEL_VALUES_DROPPED
            })
            .then_some(names)
    })
    .await;
    service.shutdown().await;

    let dashboard_text = deploy_file("grafana/saga-tracker.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard_text).expect("dashboard is JSON");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "dashboard has panels"
    );
    let alerts = deploy_file("prometheus/alerts.yml");

    for (file, text) in [
        ("grafana/saga-tracker.json", &dashboard_text),
        ("prometheus/alerts.yml", &alerts),
    ] {
        let used = referenced_metrics(text);
        assert!(!used.is_empty(), "{file} references no metric");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics /metrics does not export: {missing:?}\nexported: {exported:?}"
        );
    }
    // the issue's list: each is on the dashboard
    let on_dashboard = referenced_metrics(&dashboard_text);
    for required in [
        "saga_tracker_events_ingested_total",
        "saga_tracker_sagas",
        "saga_tracker_step_duration_seconds_bucket",
        "saga_tracker_stuck_sagas",
        "saga_tracker_consumer_lag",
        "saga_tracker_dlq_messages_total",
    ] {
        assert!(
            on_dashboard.contains(required),
            "dashboard does not show {required}"
        );
    }
    // and each alert the issue asks for exists
    for alert in [
        "SagaFailureRateSpike",
        "SagasStuck",
        "SagaCompensationFailed",
        "SagaTrackerDlqGrowing",
        "SagaTrackerConsumerLag",
    ] {
        assert!(
            alerts.contains(&format!("alert: {alert}\n")),
            "alerts.yml lacks {alert}"
        );
    }
}

#[test]
fn the_scanner_finds_names() {
    let found = referenced_metrics(
        r#"rate(saga_tracker_a_total{x="y"}[5m]) / my_saga_tracker_b + saga_tracker_c_bucket"#,
    );
    assert_eq!(
        found,
        BTreeSet::from([
            "saga_tracker_a_total".to_owned(),
            "saga_tracker_c_bucket".to_owned()
        ])
    );
}
