//! The operations subcommands of the `saga-tracker-service` binary: help, exit codes, output.

mod common;

use std::process::{Command, Output};

use common::{SagaBuilder, TestDb};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Store;
use saga_tracker_service::db::IncomingEvent;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saga-tracker-service"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_SCHEMA")
        .env_remove("TRACKER_ARCHIVE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn every_command_has_help() {
    let top = run(&["--help"]);
    assert_eq!(top.status.code(), Some(0));
    let (out, _) = text(&top);
    for command in ["archive", "restore", "replay", "reconcile", "topics", "dlq"] {
        assert!(out.contains(command), "{command} in: {out}");
    }
    for (args, flag) in [
        (vec!["archive", "--help"], "--retention-days"),
        (vec!["restore", "--help"], "--saga-id"),
        (vec!["replay", "--help"], "--from"),
        (vec!["dlq", "redrive", "--help"], "--reason"),
        (vec!["topics", "ensure", "--help"], "--apply"),
        (vec!["reconcile", "--help"], "--outbox-database-url"),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(text(&o).0.contains(flag), "{args:?}: {}", text(&o).0);
    }
}

#[test]
fn bad_input_exits_2_with_a_clear_error() {
    let db = "postgres://postgres@127.0.0.1:5432/test";
    for (args, says) in [
        (
            vec![
                "restore",
                "--from",
                "2024-13-01",
                "--to",
                "2024-11-24",
                "--archive-url",
                "file:///tmp/x",
                "--database-url",
                db,
            ],
            "not a day",
        ),
        (
            vec!["replay", "--from", "yesterday", "--database-url", db],
            "RFC 3339",
        ),
        (
            vec![
                "archive",
                "--archive-url",
                "ftp://host/dir",
                "--database-url",
                db,
            ],
            "not supported",
        ),
        (
            vec![
                "archive",
                "--retention-days",
                "0",
                "--archive-url",
                "file:///tmp/x",
                "--database-url",
                db,
            ],
            "retention-days",
        ),
        (
            vec!["reconcile", "--day", "someday", "--database-url", db],
            "someday",
        ),
        (vec!["archive", "--database-url", db], "--archive-url"),
    ] {
        let o = run(&args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_restore_and_reconcile_from_the_command_line() {
    let db = TestDb::new();
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store");
    let events = SagaBuilder::new("cli-saga", "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .events;
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
    let dir = tempfile::tempdir().expect("dir");
    let archive_url = format!("file://{}", dir.path().display());
    let base = [
        "--database-url",
        db.url.as_str(),
        "--database-schema",
        db.schema.as_str(),
    ];

    let o = run(&[&["archive", "--archive-url", &archive_url][..], &base[..]].concat());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "2024-11-24  2 rows -> {archive_url}/saga_events/year=2024/month=11/2024-11-24.avro (2 events, verified), partition dropped"
        )),
        "{out}"
    );
    assert!(out.contains("archived 1 days, 2 events"), "{out}");

    let o = run(&[
        &[
            "restore",
            "--from",
            "2024-11-24",
            "--to",
            "2024-11-24",
            "--archive-url",
            &archive_url,
        ][..],
        &base[..],
    ]
    .concat());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        out.contains(
            "restored 1 days: 2 events read, 2 inserted (0 online already), 1 sagas recomputed"
        ),
        "{out}"
    );

    // no outbox given: bad input
    let o = run(&[&["reconcile", "--day", "2024-11-24"][..], &base[..]].concat());
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("--outbox-database-url"));
}
