//! `--with-tracker`: the demo runs the central tracker service in-process against the real PostgreSQL
//! (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`) on a MockCluster, or on
//! `SAGA_TRACKER_TEST_BROKERS` when set, and what its API serves matches what the demo read back from Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use saga_tracker::SagaEvent;
use saga_tracker::StepStatus;
use saga_tracker::testing::TestKafka;
use saga_tracker_examples::bus::all_topics;
use saga_tracker_examples::central_tracker::{DEFAULT_DATABASE_URL, TrackerOptions};
use saga_tracker_examples::orchestrator::Fate;
use saga_tracker_examples::{BrokerChoice, DemoConfig, DemoOutcome, RunReport, run};
use saga_tracker_service::api::model::SagaState;

const BIN: &str = env!("CARGO_BIN_EXE_order-saga-demo");

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// The demo on a test broker (MockCluster, or `SAGA_TRACKER_TEST_BROKERS`) with the tracker service.
fn run_with_tracker(sagas: u32, keep_data: bool) -> Box<RunReport> {
    run_with_tracker_and(sagas, keep_data, 0, 15)
}

/// [`run_with_tracker`] with `--hang-sagas` and the tracker's `--stuck-after-minutes`.
fn run_with_tracker_and(
    sagas: u32,
    keep_data: bool,
    hang_sagas: u32,
    stuck_after_minutes: u32,
) -> Box<RunReport> {
    let kafka = TestKafka::start().expect("test kafka");
    for topic in all_topics() {
        kafka.create_topic(topic, 3).expect("topic");
    }
    let outcome = run(DemoConfig {
        sagas,
        brokers: BrokerChoice::External(kafka.brokers().to_owned()),
        progress: false,
        tracker: Some(TrackerOptions {
            database_url: database_url(),
            keep_data,
            stuck_after_minutes,
            ..TrackerOptions::default()
        }),
        hang_sagas,
        ..DemoConfig::default()
    })
    .expect("demo runs");
    match outcome {
        DemoOutcome::Report(report) => report,
        DemoOutcome::Served(_) => panic!("expected a report"),
    }
}

/// Runs `f` with a connection pool to the test database.
fn with_db<T>(f: impl AsyncFnOnce(&sqlx::PgPool) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&database_url())
            .await
            .expect("test database");
        let out = f(&pool).await;
        pool.close().await;
        out
    })
}

fn schema_exists(schema: &str) -> bool {
    with_db(async |pool| {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
        )
        .bind(schema)
        .fetch_one(pool)
        .await
        .expect("query");
        n == 1
    })
}

/// Drops a kept schema at the end of a test (also when it fails).
struct DropSchema(String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
        with_db(async |pool| {
            let _ = sqlx::query(&sql).execute(pool).await;
        });
    }
}

#[test]
fn the_api_serves_the_failed_sagas_timeline_as_recorded_in_kafka() {
    let report = run_with_tracker(12, false);
    assert!(report.is_consistent(), "problems: {:?}", report.problems());
    let tracker = report.tracker.as_ref().expect("tracker report");
    let saga_id = tracker.saga.saga_id.as_str();

    // The saga shown is one the demo planned to fail at payment and compensate successfully.
    let plan = report
        .plans
        .iter()
        .find(|p| p.saga_id == saga_id)
        .expect("a saga of this run");
    assert_eq!(plan.fate, Fate::FailAtPayment, "{saga_id}");
    assert_eq!(tracker.saga.status, SagaState::Compensated);
    assert_eq!(tracker.saga.failed_step.as_deref(), Some("charge_payment"));
    assert!(tracker.saga.pending_compensations.is_empty());

    // Same events as read back from Kafka: same ids, each at the same time, in recordedAt order.
    let mut from_kafka: BTreeMap<uuid::Uuid, &SagaEvent> = BTreeMap::new();
    for event in report.events.iter().filter(|e| e.saga_id == saga_id) {
        from_kafka.insert(event.event_id, event);
    }
    let api_ids: Vec<uuid::Uuid> = tracker.timeline.iter().map(|e| e.event.event_id).collect();
    assert_eq!(
        api_ids.iter().copied().collect::<BTreeSet<_>>(),
        from_kafka.keys().copied().collect::<BTreeSet<_>>(),
        "event ids"
    );
    assert_eq!(api_ids.len(), from_kafka.len(), "no event twice");
    assert_eq!(tracker.saga.event_count as usize, from_kafka.len());
    for entry in &tracker.timeline {
        let api = &entry.event;
        let kafka = from_kafka[&api.event_id];
        assert_eq!(
            api.recorded_at.timestamp_micros(),
            kafka.recorded_at,
            "{}",
            api.event_id
        );
        assert_eq!(
            (&api.step, &api.status, &api.service),
            (&kafka.step, &kafka.status, &kafka.service)
        );
        assert_eq!(api.duration_micros, kafka.duration_micros);
        assert_eq!(
            api.error_kind.as_deref(),
            kafka.error.as_ref().map(|e| e.kind.as_str())
        );
    }
    let times: Vec<i64> = tracker
        .timeline
        .iter()
        .map(|e| e.event.recorded_at.timestamp_micros())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted, "ordered by recordedAt");

    // The failure links to the compensations it triggered, and they back to it.
    let failed = tracker
        .timeline
        .iter()
        .find(|e| e.event.status == StepStatus::Failed)
        .expect("a FAILED event");
    let compensations: Vec<uuid::Uuid> = tracker
        .timeline
        .iter()
        .filter(|e| e.event.status.is_compensation())
        .map(|e| e.event.event_id)
        .collect();
    assert_eq!(
        compensations.len(),
        4,
        "two compensations, started and done"
    );
    assert_eq!(failed.triggered_compensations, compensations);
    assert!(
        tracker
            .timeline
            .iter()
            .filter(|e| e.event.status.is_compensation())
            .all(|e| e.triggered_by == Some(failed.event.event_id))
    );
    // ... by cause, not by time: each compensation names the failure in its causeIdempotencyKey.
    assert!(
        tracker
            .timeline
            .iter()
            .filter(|e| e.event.status.is_compensation())
            .all(|e| e.event.cause_idempotency_key.as_deref()
                == Some(failed.event.idempotency_key.as_str())),
        "{:?}",
        tracker.timeline
    );

    // Every event of the run was stored; the metrics say so too.
    let distinct: BTreeSet<uuid::Uuid> = report.events.iter().map(|e| e.event_id).collect();
    assert_eq!(tracker.run_events, distinct.len());
    assert!(
        tracker
            .metrics_lines
            .iter()
            .any(|l| l.starts_with("saga_tracker_events_ingested_total{")),
        "{:?}",
        tracker.metrics_lines
    );
    // 12 sagas at the default shares: 3 compensated, counted over this run's sagas; the metric counts the whole
    // schema, which can also hold earlier runs' sagas (a start offset too early on a shared broker).
    assert_eq!(
        tracker
            .run_stats
            .sagas_by_status
            .get(&SagaState::Compensated),
        Some(&3),
        "{:?}",
        tracker.run_stats
    );
    if tracker.stats.sagas_total == tracker.run_stats.sagas_total {
        assert!(
            tracker
                .metrics_lines
                .iter()
                .any(|l| l == "saga_tracker_sagas{status=\"COMPENSATED\"} 3"),
            "12 sagas at the default shares: 3 compensated; {:?}",
            tracker.metrics_lines
        );
    }
    // The SDK writes schema v2: the tracker knows the successful sagas finished (not v1's best-effort SUCCEEDED).
    let completed = tracker
        .metrics_lines
        .iter()
        .find_map(|l| l.strip_prefix("saga_tracker_sagas{status=\"COMPLETED\"} "))
        .and_then(|n| n.parse::<f64>().ok());
    assert!(
        completed.is_some_and(|n| n > 0.0),
        "COMPLETED sagas in {:?}",
        tracker.metrics_lines
    );

    let printed = report.render();
    assert!(
        printed.contains(&format!(
            "Timeline of {saga_id} as served by GET {}/api/v1/sagas/{saga_id}/timeline",
            tracker.api_url
        )),
        "{printed}"
    );
    assert!(printed.contains("derived state COMPENSATED"), "{printed}");
    assert!(
        printed.contains("compensates failure #6"),
        "links: {printed}"
    );
    assert!(
        printed.contains(&format!("schema {} dropped", tracker.schema)),
        "{printed}"
    );

    // The run's schema is gone.
    assert!(!tracker.kept);
    assert!(
        !schema_exists(&tracker.schema),
        "{} dropped",
        tracker.schema
    );
}

#[test]
fn hanging_sagas_are_stuck_in_the_stats_and_the_metric_and_completed_ones_are_completed() {
    // 10 sagas at the default shares: 3 fail at payment, 7 are planned to complete, 2 of those hang after
    // reserve_stock. With --stuck-after-minutes 0 every saga not terminal counts as stuck at once.
    let report = run_with_tracker_and(10, false, 2, 0);
    assert!(report.is_consistent(), "problems: {:?}", report.problems());
    let hanging: Vec<&str> = report
        .plans
        .iter()
        .filter(|p| p.fate == Fate::HangAfterReserve)
        .map(|p| p.saga_id.as_str())
        .collect();
    assert_eq!(hanging.len(), 2);
    for id in &hanging {
        let steps: Vec<&str> = report.timelines[*id]
            .iter()
            .map(|e| e.step.as_str())
            .collect();
        assert_eq!(
            steps,
            [
                "create_order",
                "create_order",
                "reserve_stock",
                "reserve_stock"
            ],
            "{id} stops between reserve_stock and charge_payment"
        );
    }
    let tracker = report.tracker.as_ref().expect("tracker report");
    // This run's sagas: the schema can also hold earlier runs' (a start offset too early on a shared broker).
    let stats = &tracker.run_stats;
    assert_eq!(stats.sagas_total, 10);
    assert_eq!(stats.stuck_sagas, 2, "{stats:?}");
    assert_eq!(stats.stuck_after_seconds, 0);
    assert_eq!(
        stats.sagas_by_status.get(&SagaState::Running),
        Some(&2),
        "{stats:?}"
    );
    assert_eq!(
        stats.sagas_by_status.get(&SagaState::Completed),
        Some(&5),
        "{stats:?}"
    );
    // The metric and the stats line count the whole schema: only this run's when it holds nothing else.
    let only_this_run = tracker.stats.sagas_total == stats.sagas_total;
    if only_this_run {
        assert!(
            tracker
                .metrics_lines
                .iter()
                .any(|l| l == "saga_tracker_stuck_sagas 2"),
            "{:?}",
            tracker.metrics_lines
        );
        assert!(
            tracker
                .metrics_lines
                .iter()
                .any(|l| l == "saga_tracker_sagas{status=\"COMPLETED\"} 5"),
            "{:?}",
            tracker.metrics_lines
        );
    }
    let printed = report.render();
    assert!(
        printed.contains(&format!(
            "2 sagas left hanging after reserve_stock (--hang-sagas): {}",
            hanging.join(", ")
        )),
        "{printed}"
    );
    assert!(printed.contains("COMPLETED"), "{printed}");
    assert!(
        !only_this_run || printed.contains("stuck (not terminal, silent over 0 s): 2"),
        "{printed}"
    );
}

#[test]
fn keep_tracker_data_keeps_the_runs_schema() {
    let report = run_with_tracker(3, true);
    let tracker = report.tracker.as_ref().expect("tracker report");
    assert!(tracker.kept);
    let _cleanup = DropSchema(tracker.schema.clone());
    // This run's events (a start offset too early can let the service store earlier runs' too).
    let sql = format!(
        "SELECT count(*) FROM \"{}\".saga_events WHERE left(saga_id, length($1)) = $1",
        tracker.schema
    );
    let stored: i64 = with_db(async |pool| {
        sqlx::query_scalar(&sql)
            .bind(&tracker.run_prefix)
            .fetch_one(pool)
            .await
            .expect("kept events")
    });
    let distinct: BTreeSet<uuid::Uuid> = report.events.iter().map(|e| e.event_id).collect();
    assert_eq!(stored, distinct.len() as i64, "only this run's events");
    assert!(
        report
            .render()
            .contains(&format!("kept in schema {}", tracker.schema))
    );
}

#[test]
fn an_unusable_database_gives_one_line_and_exit_code_2() {
    let cases: [(&[&str], &str); 2] = [
        (
            &["--database-url", "postgres://postgres@127.0.0.1:1/test"],
            "error: --with-tracker: cannot use the database at postgres://postgres@127.0.0.1:1/test:",
        ),
        (
            &["--database-url", "mysql://nope"],
            "error: --with-tracker: cannot use the database at mysql://nope: invalid URL:",
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(BIN)
            .args(["--with-tracker", "--sagas", "2", "--no-progress"])
            .args(args)
            .output()
            .expect("run order-saga-demo");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line, {stderr:?}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// Where a run starts reading is only an optimisation: started at offset 0 of every topic, behind an earlier
/// run's commands, replies and events on the same broker, a run handles, reads back and counts exactly what it
/// would from the high watermarks (a broker may report them too low, tansu 0.6 does).
#[test]
fn a_start_offset_too_early_changes_nothing() {
    let kafka = TestKafka::start().expect("test kafka");
    for topic in all_topics() {
        kafka.create_topic(topic, 3).expect("topic");
    }
    let config = |sagas: u32, from_earliest: bool| DemoConfig {
        sagas,
        brokers: BrokerChoice::External(kafka.brokers().to_owned()),
        progress: false,
        tracker: Some(TrackerOptions {
            database_url: database_url(),
            ..TrackerOptions::default()
        }),
        from_earliest,
        ..DemoConfig::default()
    };
    let report = |config: DemoConfig| match run(config).expect("demo runs") {
        DemoOutcome::Report(report) => report,
        DemoOutcome::Served(_) => panic!("expected a report"),
    };
    let earlier = report(config(6, false));
    assert!(
        earlier.is_consistent(),
        "problems: {:?}",
        earlier.problems()
    );
    let this = report(config(5, true));
    assert!(this.is_consistent(), "problems: {:?}", this.problems());

    // The earlier run's events were read, and skipped.
    assert!(
        this.other_sagas > 0,
        "read from offset 0: {}",
        this.other_sagas
    );
    assert!(this.events.iter().all(|e| {
        e.saga_id
            .starts_with(this.tracker.as_ref().map_or("?", |t| t.run_prefix.as_str()))
    }));
    // The services handled this run's commands only: their trackers recorded exactly the events read back.
    let recorded: u64 = this.tracker_stats.iter().map(|(_, s)| s.recorded).sum();
    let distinct: BTreeSet<uuid::Uuid> = this.events.iter().map(|e| e.event_id).collect();
    assert_eq!(
        recorded as usize,
        distinct.len(),
        "{:?}",
        this.tracker_stats
    );
    // The tracker service stored the earlier run's sagas too, and counts this run's 5.
    let tracker = this.tracker.as_ref().expect("tracker report");
    assert_eq!(tracker.run_stats.sagas_total, 5, "{:?}", tracker.run_stats);
    assert_eq!(tracker.run_stats.events_total, distinct.len() as i64);
    // 11 on a broker of its own (the mock cluster); a shared one (tansu) adds other tests' runs.
    assert!(tracker.stats.sagas_total >= 11, "{:?}", tracker.stats);
    assert_eq!(tracker.run_events, distinct.len());
    assert!(
        this.render()
            .contains(&format!("This run's sagas ({}*): 5:", tracker.run_prefix)),
        "{}",
        this.render()
    );
}
