//! The demo end to end: the library's `run` on the embedded Kafka and on `SAGA_TRACKER_TEST_BROKERS`, and the
//! `order-saga-demo` binary (bad input, the default path, one service per process).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use saga_tracker::testing::TestKafka;
use saga_tracker::{SagaEvent, StepStatus};
use saga_tracker_examples::bus::all_topics;
use saga_tracker_examples::orchestrator::Fate;
use saga_tracker_examples::report::consistency::FinalState;
use saga_tracker_examples::{
    BrokerChoice, DemoConfig, DemoOutcome, RunReport, order_saga_shape, run,
};

const BIN: &str = env!("CARGO_BIN_EXE_order-saga-demo");

fn config(sagas: u32, brokers: BrokerChoice) -> DemoConfig {
    DemoConfig {
        sagas,
        brokers,
        progress: false,
        ..DemoConfig::default()
    }
}

fn report(outcome: DemoOutcome) -> Box<RunReport> {
    match outcome {
        DemoOutcome::Report(report) => report,
        DemoOutcome::Served(_) => panic!("expected a report"),
    }
}

/// Checks the consumed events directly (not through the demo's own checker): every saga reaches an end that
/// matches its planned fate, and every FAILED is followed by the compensations of the compensable steps that
/// succeeded before it, newest first, each finished.
fn assert_events_tell_the_story(report: &RunReport) {
    let shape = order_saga_shape();
    let mut by_saga: BTreeMap<&str, Vec<&SagaEvent>> = BTreeMap::new();
    for event in &report.events {
        by_saga
            .entry(event.saga_id.as_str())
            .or_default()
            .push(event);
    }
    assert_eq!(
        by_saga.len(),
        report.plans.len(),
        "every saga recorded events"
    );
    for plan in &report.plans {
        let mut events = by_saga
            .get(plan.saga_id.as_str())
            .cloned()
            .unwrap_or_default();
        events.sort_by_key(|e| (e.recorded_at, e.status.is_terminal()));
        let id = &plan.saga_id;
        // One trace per saga: the orchestrator's trace id reached every service.
        let traces: BTreeSet<Option<&str>> = events.iter().map(|e| e.trace_id()).collect();
        assert_eq!(
            traces,
            BTreeSet::from([Some(plan.trace_id.as_str())]),
            "{id}: trace ids"
        );
        let last = events.last().expect("events");
        assert!(last.status.is_terminal(), "{id}: ends with {}", last.status);
        let failed: Vec<&&SagaEvent> = events
            .iter()
            .filter(|e| e.status == StepStatus::Failed)
            .collect();
        match plan.fate {
            Fate::Complete => {
                assert!(failed.is_empty(), "{id}: nothing fails");
                assert_eq!(
                    (last.step.as_str(), last.status),
                    ("confirm_order", StepStatus::Succeeded),
                    "{id}"
                );
            }
            Fate::HangAfterReserve => {
                assert!(failed.is_empty(), "{id}: nothing fails");
                assert_eq!(
                    (last.step.as_str(), last.status),
                    ("reserve_stock", StepStatus::Succeeded),
                    "{id}: stops between two steps"
                );
            }
            Fate::FailAtPayment | Fate::FailAtPaymentAndRelease => {
                assert_eq!(failed.len(), 1, "{id}: one failure");
                let failure = failed[0];
                assert_eq!(failure.step, "charge_payment", "{id}");
                let error = failure.error.as_ref().expect("FAILED carries its error");
                assert_eq!(error.kind, "PaymentError", "{id}");
                assert!(
                    error.message.contains("insufficient funds"),
                    "{id}: {}",
                    error.message
                );
                let failed_index = shape
                    .iter()
                    .position(|s| s.name == failure.step)
                    .expect("known step");
                let expected: Vec<&str> = shape[..failed_index]
                    .iter()
                    .rev()
                    .filter(|s| s.compensable)
                    .map(|s| s.name)
                    .collect();
                let after: Vec<&&SagaEvent> = events
                    .iter()
                    .filter(|e| e.recorded_at >= failure.recorded_at && e.status.is_compensation())
                    .collect();
                let started: Vec<&str> = after
                    .iter()
                    .filter(|e| e.status == StepStatus::CompensationStarted)
                    .map(|e| e.step.as_str())
                    .collect();
                assert_eq!(
                    started, expected,
                    "{id}: compensations after the failure, newest first"
                );
                let ends: Vec<(&str, StepStatus)> = after
                    .iter()
                    .filter(|e| e.status.is_terminal())
                    .map(|e| (e.step.as_str(), e.status))
                    .collect();
                let release = if plan.fate == Fate::FailAtPayment {
                    StepStatus::Compensated
                } else {
                    StepStatus::CompensationFailed
                };
                assert_eq!(
                    ends,
                    vec![
                        ("reserve_stock", release),
                        ("create_order", StepStatus::Compensated)
                    ],
                    "{id}: every compensation finished"
                );
            }
        }
        assert_eq!(
            report.consistency.states[id],
            plan.fate.expected_state(),
            "{id}: final state"
        );
    }
}

#[test]
fn demo_on_the_embedded_kafka_records_every_step_and_compensation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("events.jsonl");
    let outcome = run(DemoConfig {
        emit_json: Some(json.clone()),
        ..config(20, BrokerChoice::Embedded)
    })
    .expect("demo runs");
    let report = report(outcome);
    assert!(report.is_consistent(), "problems: {:?}", report.problems());
    assert_eq!(report.exit_code(), 0);
    assert!(report.undecodable.is_empty());
    assert_events_tell_the_story(&report);

    // The default shares put every final state in the run.
    for state in [
        FinalState::Completed,
        FinalState::Compensated,
        FinalState::CompensationFailed,
    ] {
        assert!(report.consistency.count(state) > 0, "no saga ended {state}");
    }
    assert_eq!(report.consistency.count(FinalState::Incomplete), 0);

    // --emit-json: every decoded event, one JSON object per line, in the Avro field names.
    let text = std::fs::read_to_string(&json).expect("json lines");
    let from_json: Vec<SagaEvent> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a SagaEvent per line"))
        .collect();
    assert_eq!(from_json, report.events);
    assert!(
        text.lines().all(|l| l.contains("\"sagaId\":")),
        "Avro field names"
    );

    // The printed report comes from the consumed events.
    let printed = report.render();
    assert!(printed.contains("COMPENSATION_FAILED"), "{printed}");
    assert!(printed.contains("Timeline of saga-"), "{printed}");
    assert!(
        printed.contains("PaymentError: insufficient funds"),
        "{printed}"
    );
    assert!(
        printed.contains("Consistency: all 20 saga timelines are consistent."),
        "{printed}"
    );
}

#[test]
fn the_seed_decides_which_sagas_fail() {
    let plan = |seed| {
        let config = DemoConfig {
            seed,
            ..config(40, BrokerChoice::Embedded)
        };
        saga_tracker_examples::orchestrator::plan(&config, "run")
            .into_iter()
            .map(|p| (p.saga_id, p.fate))
            .collect::<Vec<_>>()
    };
    assert_eq!(plan(7), plan(7));
    assert_ne!(plan(7), plan(8));
    let fates = plan(7);
    assert_eq!(
        fates.iter().filter(|(_, f)| *f != Fate::Complete).count(),
        12,
        "round(40 x 0.3)"
    );
    assert_eq!(
        fates
            .iter()
            .filter(|(_, f)| *f == Fate::FailAtPaymentAndRelease)
            .count(),
        2,
        "round(12 x 0.2)"
    );
}

/// Against `SAGA_TRACKER_TEST_BROKERS` when set (else a mock cluster reached through `--brokers`): two runs on the
/// same broker each read back exactly their own sagas.
#[test]
fn demo_runs_against_test_brokers_and_runs_do_not_mix() {
    let kafka = TestKafka::start().expect("test kafka");
    for topic in all_topics() {
        kafka.create_topic(topic, 3).expect("topic");
    }
    let brokers = BrokerChoice::External(kafka.brokers().to_owned());
    let first = report(run(config(6, brokers.clone())).expect("first run"));
    let second = report(
        run(DemoConfig {
            seed: 3,
            ..config(8, brokers)
        })
        .expect("second run"),
    );
    for report in [&first, &second] {
        assert!(report.is_consistent(), "problems: {:?}", report.problems());
        assert_events_tell_the_story(report);
        let ids: BTreeSet<&str> = report.events.iter().map(|e| e.saga_id.as_str()).collect();
        assert_eq!(ids.len(), report.plans.len());
        assert!(
            ids.iter().all(|id| id.contains(&report.run_id)),
            "only this run's sagas"
        );
    }
    assert_ne!(first.run_id, second.run_id);
}

fn run_bin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run order-saga-demo");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_gives_one_line_and_exit_code_2() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--failure-rate", "2"],
            "error: invalid value '2' for '--failure-rate <F>': 2 is outside [0, 1]",
        ),
        (
            &["--sagas", "0"],
            "error: invalid value '0' for '--sagas <N>': must be at least 1",
        ),
        (
            &["--brokers", "127.0.0.1:1"],
            "error: cannot reach Kafka at 127.0.0.1:1 within 5s:",
        ),
        (
            &["--service", "payment"],
            "error: --service payment needs --brokers",
        ),
        (
            &["--emit-json", "/nonexistent-dir/events.jsonl"],
            "error: cannot write --emit-json /nonexistent-dir/events.jsonl:",
        ),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = run_bin(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with(expected), "{args:?}: {stderr:?}");
        assert!(!stderr.contains("panicked"), "{args:?}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

#[test]
fn the_binary_prints_summary_timeline_and_verdict() {
    let (code, stdout, stderr) = run_bin(&["--sagas", "10", "--no-progress"]);
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    for part in [
        "Sagas by final state",
        "Events by status",
        "Step durations",
        "Timeline of saga-",
        "Consistency: all 10",
    ] {
        assert!(stdout.contains(part), "missing {part:?} in\n{stdout}");
    }
}

/// A service process. Dropping it kills the process (a failing assertion must not leave services running).
struct Service {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
}

impl Service {
    /// Stops it the way a person would (Ctrl-C); returns its exit code and what it printed after starting.
    fn interrupt(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill -INT");
        assert!(status.success());
        let code = self.child.wait().expect("wait").code();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stderr, &mut rest);
        (code, rest)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_service(name: &str, brokers: &str, run_id: &str) -> Service {
    let mut child = Command::new(BIN)
        .args(["--service", name, "--brokers", brokers, "--run-id", run_id])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start service");
    // Ready once it says it is serving its command topic.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read stderr");
    assert!(line.contains("serving"), "{name}: {line}");
    Service { child, stderr }
}

#[test]
fn one_service_per_process_against_a_shared_broker() {
    let kafka = TestKafka::start().expect("test kafka");
    for topic in all_topics() {
        kafka.create_topic(topic, 3).expect("topic");
    }
    // One run id for the three processes: the services serve only its sagas, whatever else a shared broker
    // carries (other tests' runs, earlier runs read from a start offset too early).
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let run_id = &run_id[run_id.len() - 12..];
    let product = start_service("product", kafka.brokers(), run_id);
    let payment = start_service("payment", kafka.brokers(), run_id);
    let brokers = kafka.brokers();
    let order = [
        "--service",
        "order",
        "--brokers",
        brokers,
        "--run-id",
        run_id,
        "--sagas",
        "8",
        "--reply-timeout",
        "20",
    ];
    let (code, stdout, stderr) = run_bin(&order);
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    assert!(
        stdout.contains("Consistency: all 8 saga timelines are consistent."),
        "{stdout}"
    );
    assert!(
        stdout.contains("product-service") && stdout.contains("payment-service"),
        "{stdout}"
    );
    // 8 sagas, round(8 x 0.3) = 2 fail at payment: 8 reservations + 2 releases, 8 charges.
    for (service, expected) in [
        (product, "product-service: handled 10 commands"),
        (payment, "payment-service: handled 8 commands"),
    ] {
        let (code, stderr) = service.interrupt();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
