//! Daily reconciliation between the services' outbox tables and the tracker (R9), and its gauge.

mod common;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use common::{SagaBuilder, TestDb};
use saga_tracker_core::SagaEvent;
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Store;
use saga_tracker_service::db::IncomingEvent;
use saga_tracker_service::ops::OpsError;
use saga_tracker_service::ops::reconcile::{self, ReconcileOptions};

/// A service database: its own schema holding the outbox table of the contract.
async fn outbox_db() -> (TestDb, String, sqlx::PgPool) {
    let db = TestDb::new();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect");
    for sql in [
        format!("CREATE SCHEMA \"{}\"", db.schema),
        format!(
            "CREATE TABLE \"{}\".saga_tracker_outbox (event_id UUID NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
             saga_id TEXT NOT NULL, payload BYTEA NOT NULL, headers JSONB NOT NULL DEFAULT '{{}}',
             published_at TIMESTAMPTZ, PRIMARY KEY (event_id, created_at)) PARTITION BY RANGE (created_at)",
            db.schema
        ),
        format!(
            "CREATE TABLE \"{0}\".saga_tracker_outbox_default PARTITION OF \"{0}\".saga_tracker_outbox DEFAULT",
            db.schema
        ),
    ] {
        sqlx::query(&sql).execute(&pool).await.expect("outbox DDL");
    }
    let url = format!("{}?options[search_path]={}", db.url, db.schema);
    (db, url, pool)
}

async fn record(
    pool: &sqlx::PgPool,
    schema: &str,
    e: &SagaEvent,
    payload: Vec<u8>,
    published: bool,
) {
    let created = DateTime::<Utc>::from_timestamp_micros(e.recorded_at).expect("time");
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".saga_tracker_outbox (event_id, created_at, saga_id, payload, published_at)
         VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN $2 END)"
    ))
    .bind(e.event_id)
    .bind(created)
    .bind(&e.saga_id)
    .bind(payload)
    .bind(published)
    .execute(pool)
    .await
    .expect("outbox insert");
}

async fn track(store: &Store, events: &[SagaEvent]) {
    let batch: Vec<IncomingEvent> = events
        .iter()
        .enumerate()
        .map(|(i, e)| IncomingEvent {
            event: e.clone(),
            topic: "saga.tracker".into(),
            partition: 0,
            offset: i as i64,
        })
        .collect();
    store.write_batch(&batch).await.expect("write");
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 11, 24).expect("day")
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_finds_what_is_missing_on_either_side() {
    let tracker = TestDb::new();
    let store = Store::connect(&tracker.url, Some(&tracker.schema), 2)
        .await
        .expect("store");
    let (outbox, url, pool) = outbox_db().await;

    // complete on both sides
    let ok = SagaBuilder::new("saga-ok", "OrderSaga", 10)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .events;
    // the tracker lost one published event; one is still unpublished
    let lost = SagaBuilder::new("saga-lost", "OrderSaga", 20)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .ev("order-service", "charge_payment", Started, 1)
        .events;
    // in the tracker only (the service wrote no outbox row for it)
    let extra = SagaBuilder::new("saga-extra", "OrderSaga", 30)
        .ev("order-service", "reserve_stock", Started, 1)
        .events;
    // a service without an outbox: not compared
    let legacy = SagaBuilder::new("saga-legacy", "OrderSaga", 40)
        .ev("legacy-service", "reserve_stock", Started, 1)
        .events;
    // the next day, complete: another report
    let next_day = SagaBuilder::new("saga-next", "OrderSaga", 86_400 + 10)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .events;

    for e in ok.iter().chain(&lost).chain(&next_day) {
        let published = e.event_id != lost[2].event_id;
        record(
            &pool,
            &outbox.schema,
            e,
            saga_tracker_core::codec::encode(e),
            published,
        )
        .await;
    }
    // a re-sent copy of an event (another created_at): a duplicate, absorbed
    let mut resent = ok[0].clone();
    resent.recorded_at += 1; // only for the created_at of the copy
    sqlx::query(&format!(
        "INSERT INTO \"{}\".saga_tracker_outbox (event_id, created_at, saga_id, payload)
         VALUES ($1, $2, $3, $4)",
        outbox.schema
    ))
    .bind(ok[0].event_id)
    .bind(DateTime::<Utc>::from_timestamp_micros(resent.recorded_at).expect("time"))
    .bind(&ok[0].saga_id)
    .bind(saga_tracker_core::codec::encode(&ok[0]))
    .execute(&pool)
    .await
    .expect("insert");
    // a row that does not decode
    let mut garbage = ok[1].clone();
    garbage.event_id = uuid::Uuid::now_v7();
    record(&pool, &outbox.schema, &garbage, b"not avro".to_vec(), true).await;

    track(
        &store,
        &[
            ok.clone(),
            lost[..1].to_vec(),
            extra.clone(),
            legacy,
            next_day,
        ]
        .concat(),
    )
    .await;

    let options = ReconcileOptions {
        day: day(),
        outbox_urls: vec![url.clone()],
        stuck_after: Duration::from_secs(15 * 60),
    };
    let r = reconcile::run(store.pool(), &options)
        .await
        .expect("reconcile");
    assert!(!r.ok);
    assert_eq!(r.services, vec!["order-service".to_owned()]);
    assert_eq!(r.missing_in_tracker_total, 2);
    assert_eq!(r.unpublished_total, 1);
    let missing: Vec<_> = r.missing_in_tracker.iter().map(|m| m.event_id).collect();
    assert!(missing.contains(&lost[1].event_id) && missing.contains(&lost[2].event_id));
    assert_eq!(r.missing_in_outbox_total, 1);
    assert_eq!(r.missing_in_outbox[0].event_id, extra[0].event_id);
    assert_eq!(r.duplicates_absorbed, 1);
    assert_eq!(r.undecodable_total, 1);
    let row = |step: &str, status: &str| {
        r.counts
            .iter()
            .find(|c| c.step == step && c.status == status)
            .map(|c| (c.outbox, c.tracker))
    };
    assert_eq!(row("reserve_stock", "STARTED"), Some((2, 3)));
    assert_eq!(row("reserve_stock", "SUCCEEDED"), Some((2, 1)));
    assert_eq!(row("charge_payment", "STARTED"), Some((1, 0)));
    assert_eq!(r.count_mismatches, 3);
    // the day's sagas RUNNING since 2024 are stuck, whichever service recorded them
    let stuck: Vec<&str> = r.stuck_sagas.iter().map(|s| s.saga_id.as_str()).collect();
    assert_eq!(stuck, vec!["saga-lost", "saga-extra", "saga-legacy"]);

    let md = reconcile::markdown(&r);
    assert!(
        md.contains("| OrderSaga | reserve_stock | SUCCEEDED | 2 | 1 | **differs** |"),
        "{md}"
    );
    assert!(
        md.contains("Missing in the tracker: 2 (1 not yet published"),
        "{md}"
    );
    assert!(md.contains("DISCREPANCY"), "{md}");
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["missing_in_tracker_total"], 2);

    // the binary: JSON for machines, exit 1 on the discrepancy
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_saga-tracker-service"))
        .args([
            "reconcile",
            "--day",
            "2024-11-24",
            "--format",
            "json",
            "--outbox-database-url",
            &url,
            "--database-url",
            &tracker.url,
            "--database-schema",
            &tracker.schema,
        ])
        .output()
        .expect("binary runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["missing_in_tracker_total"], 2);
    assert_eq!(json["ok"], false);

    // the gauge the service reports
    let last = reconcile::last_run(store.pool())
        .await
        .expect("query")
        .expect("a run");
    assert_eq!(
        (last.missing_in_tracker, last.missing_in_outbox, last.ok),
        (2, 1, false)
    );

    // the next day agrees; the latest run is what the gauge shows
    let next = reconcile::run(
        store.pool(),
        &ReconcileOptions {
            day: day().succ_opt().expect("day"),
            ..options.clone()
        },
    )
    .await
    .expect("reconcile");
    assert!(next.ok, "{}", reconcile::markdown(&next));
    assert_eq!(next.counts.len(), 2);
    let last = reconcile::last_run(store.pool())
        .await
        .expect("query")
        .expect("a run");
    assert_eq!((last.missing_in_tracker, last.ok), (0, true));

    // bad input
    let err = reconcile::run(
        store.pool(),
        &ReconcileOptions {
            outbox_urls: Vec::new(),
            ..options.clone()
        },
    )
    .await
    .expect_err("no outbox");
    assert_eq!(err.exit_code(), 2);
    let err = reconcile::run(
        store.pool(),
        &ReconcileOptions {
            outbox_urls: vec!["postgres://postgres:secret@127.0.0.1:1/nowhere".into()],
            ..options.clone()
        },
    )
    .await
    .expect_err("unreachable");
    assert!(matches!(err, OpsError::Connect { .. }), "{err}");
    assert!(
        !err.to_string().contains("secret"),
        "password redacted: {err}"
    );
    assert_eq!(err.exit_code(), 2);
}
