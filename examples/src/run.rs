//! [`run`]: the whole demo for a validated [`DemoConfig`] — Kafka, the services, the sagas, the read-back, the
//! report, and with `--with-tracker` the in-process tracker service.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use saga_tracker::{KafkaSink, Saga as _, SagaEvent, Tracker, TrackerStats};

use crate::bus::{self, Kafka, REPLY_TOPIC, TRACKER_TOPIC};
use crate::central_tracker;
use crate::cli::{DemoConfig, Role};
use crate::error::DemoError;
use crate::orchestrator::{self, Orchestrator, SagaPlan};
use crate::report::consistency::{self, Consistency, FinalState, Recording, StepShape, Violation};
use crate::report::consume;
use crate::report::run::RunReport;
use crate::report::summary;
use crate::report::tracker::TrackerReport;
use crate::saga::{OrderSaga, ServiceName};
use crate::services::{CommandScope, ServiceSet, ServiceState};
use crate::store::Store;

/// How long the trackers get to deliver what they recorded before the events are read back.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long reading `saga.tracker` back may take.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the events of services running in other processes to arrive.
const REMOTE_SETTLE: Duration = Duration::from_secs(10);

/// What a run produced.
#[derive(Debug)]
pub enum DemoOutcome {
    /// The sagas ran (roles `all` and `order`): the report built from the events read back.
    Report(Box<RunReport>),
    /// A single service ran until Ctrl-C (roles `product` and `payment`).
    Served(Vec<Served>),
}

/// What a service alone in its process did until Ctrl-C.
#[derive(Debug, Clone)]
pub struct Served {
    /// Which service.
    pub name: ServiceName,
    /// Commands it handled.
    pub handled: u64,
    /// Commands it read but skipped: another run's ([`CommandScope`]).
    pub other_runs: u64,
    /// Its tracker's counters.
    pub stats: TrackerStats,
}

impl DemoOutcome {
    /// The report, if sagas ran.
    pub fn report(&self) -> Option<&RunReport> {
        match self {
            DemoOutcome::Report(report) => Some(report),
            DemoOutcome::Served(_) => None,
        }
    }
}

/// The saga's steps, as the consistency check needs them.
pub fn order_saga_shape() -> Vec<StepShape> {
    OrderSaga::STEPS
        .iter()
        .map(|d| StepShape {
            name: d.name,
            compensable: d.compensable,
        })
        .collect()
}

/// Runs the demo: validates `config`, starts (or connects to) Kafka, runs the services and the sagas, reads
/// `saga.tracker` back and builds the report. Builds its own Tokio runtime; do not call it from async code.
pub fn run(config: DemoConfig) -> Result<DemoOutcome, DemoError> {
    config.validate()?;
    if let Some(path) = &config.emit_json {
        // Fail before any saga runs if the file cannot be written.
        std::fs::File::create(path).map_err(|source| DemoError::EmitJson {
            path: path.clone(),
            source,
        })?;
    }
    let kafka = Kafka::connect(&config.brokers)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| DemoError::Internal(format!("cannot start the async runtime: {e}")))?;
    let run_id = config.run_id.clone().unwrap_or_else(new_run_id);
    let spool_root = std::env::temp_dir().join(format!("order-saga-demo-{run_id}"));
    let result = runtime.block_on(run_with(config, kafka, run_id, &spool_root));
    // Stops the service tasks, dropping the last tracker clones (they flush on drop).
    drop(runtime);
    if result.is_err() && count_files(&spool_root) == 0 {
        let _ = std::fs::remove_dir_all(&spool_root);
    }
    result
}

/// Where this run starts reading `topic`: its high watermarks now, or with
/// [`from_earliest`](DemoConfig::from_earliest) the beginning of every partition.
fn start_offsets(
    config: &DemoConfig,
    kafka: &Kafka,
    topic: &str,
) -> Result<bus::Offsets, DemoError> {
    if config.from_earliest {
        kafka.begin_offsets(topic)
    } else {
        kafka.end_offsets(topic)
    }
}

/// Files under `dir`, recursively (0 if it does not exist).
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// A short id for this run (8 hex digits), part of every saga and order id.
fn new_run_id() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    id[id.len() - 8..].to_owned()
}

fn build_tracker(
    kafka: &Kafka,
    service: ServiceName,
    spool_root: &Path,
) -> Result<Tracker, DemoError> {
    let sink = KafkaSink::builder(kafka.brokers())
        .message_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| DemoError::Tracker(format!("{service}: {e}")))?;
    Tracker::builder()
        .service(service.recorded_name())
        .sink(sink)
        .spool_dir(spool_root.join(service.short_name()))
        .shutdown_timeout(FLUSH_TIMEOUT)
        .build()
        .map_err(|e| DemoError::Tracker(format!("{service}: {e}")))
}

/// The demo on a connected Kafka.
async fn run_with(
    config: DemoConfig,
    kafka: Kafka,
    run_id: String,
    spool_root: &Path,
) -> Result<DemoOutcome, DemoError> {
    kafka.ensure_topics().await?;

    // Note where every topic ends now: this run starts reading there. Only an optimisation: every reader skips
    // what belongs to other runs, so an earlier start (a broker's low high watermark) is harmless.
    let tracker_start = start_offsets(&config, &kafka, TRACKER_TOPIC)?;
    // `--with-tracker`: the central tracker service runs beside the services, on the same Kafka, from where this
    // run's part of saga.tracker begins. It starts before any saga (an unreachable database is bad input) and
    // stops, with its schema dropped, however the run ends.
    let central = match &config.tracker {
        Some(options) if config.role.runs_sagas() => Some(
            central_tracker::InProcessTracker::start(options, &kafka, &run_id, &tracker_start)
                .await?,
        ),
        _ => None,
    };
    let keep_data = config.tracker.as_ref().is_some_and(|t| t.keep_data);
    let serve = config.tracker.as_ref().is_some_and(|t| t.serve);
    // `--outbox`: the services' tables, the outbox and its relay, in a schema of the run's own; dropped (unless
    // kept) however the run ends.
    let store = match &config.outbox {
        Some(options) => Some(
            crate::store::Store::start(options, &kafka, &run_id, config.concurrency.min(16)).await,
        ),
        None => None,
    };
    let store = match store {
        Some(Ok(store)) => Some(store),
        Some(Err(e)) => {
            if let Some(central) = central {
                let _ = central.stop(keep_data).await;
            }
            return Err(e);
        }
        None => None,
    };
    let keep_outbox = config.outbox.as_ref().is_some_and(|o| o.keep_data);
    let outcome = run_services(
        config,
        &kafka,
        run_id,
        spool_root,
        &tracker_start,
        central.as_ref(),
        store.as_ref(),
    )
    .await;
    let outcome = match store {
        Some(store) => {
            let finished = store.finish(keep_outbox).await;
            match (outcome, finished) {
                (Ok(DemoOutcome::Report(mut report)), Ok(outbox)) => {
                    report.outbox = Some(outbox);
                    Ok(DemoOutcome::Report(report))
                }
                (Ok(outcome), Ok(_)) => Ok(outcome),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            }
        }
        None => outcome,
    };
    let Some(central) = central else {
        return outcome;
    };
    let mut outcome = outcome;
    // `--serve`: the report now, then the service until Ctrl-C (the binary does not print the report again)
    if serve
        && let Ok(DemoOutcome::Report(report)) = &mut outcome
        && let Some(tracker) = &mut report.tracker
    {
        tracker.serving = true;
        tracker.kept = keep_data;
        print!("{}", report.render());
        if let Err(e) = central.serve_until_signal().await {
            eprintln!("error: {e}");
        }
    }
    let schema = central.schema().to_owned();
    let stopped = central.stop(keep_data).await;
    if serve && let Ok(kept) = &stopped {
        println!(
            "Tracker service stopped; schema {schema} {}.",
            if *kept { "kept" } else { "dropped" }
        );
    }
    let mut outcome = outcome?;
    let kept = stopped?;
    if let DemoOutcome::Report(report) = &mut outcome
        && let Some(tracker) = &mut report.tracker
    {
        tracker.kept = kept;
    }
    Ok(outcome)
}

/// The services and, for roles that run them, the sagas and the report.
async fn run_services(
    config: DemoConfig,
    kafka: &Kafka,
    run_id: String,
    spool_root: &Path,
    tracker_start: &bus::Offsets,
    central: Option<&central_tracker::InProcessTracker>,
    store: Option<&Store>,
) -> Result<DemoOutcome, DemoError> {
    let reply_start = start_offsets(&config, kafka, REPLY_TOPIC)?;
    let mut command_starts = BTreeMap::new();
    let mut trackers = Vec::new();
    for &service in config.role.services() {
        command_starts.insert(
            service,
            start_offsets(&config, kafka, bus::command_topic(service))?,
        );
        trackers.push((service, build_tracker(kafka, service, spool_root)?));
    }
    // One tracker per service, each scoped to its service's handlers (three services share this process, and
    // each records under its own service name). The tracker service of `--with-tracker` runs beside them (see
    // `run_with`).
    // `--outbox`: the handlers on the store's tables, their events through its outbox.
    // Roles `all` and `order` plan the sagas: their services handle this run's saga ids. A service alone in its
    // process serves the run of `--run-id`, or without it whoever sends commands from now on.
    let scope = if config.role.runs_sagas() || config.run_id.is_some() {
        CommandScope::run(&run_id)
    } else {
        CommandScope::from_now()
    };
    let services = match store {
        Some(store) => ServiceSet::start_with(kafka, trackers, &command_starts, &scope, |name| {
            ServiceState::Stored(name, store.pool.clone())
        })?,
        None => ServiceSet::start(kafka, trackers, &command_starts, &scope)?,
    };
    let recording = if store.is_some() {
        Recording::Outbox
    } else {
        Recording::Direct
    };

    if !config.role.runs_sagas() {
        return serve_until_ctrl_c(kafka, services, spool_root).await;
    }

    let plans = orchestrator::plan(&config, &run_id);
    let orchestrator = Orchestrator::start(kafka, &reply_start, config.reply_timeout)?;
    let progress = progress_bar(&config);
    let started = Instant::now();
    let runs = orchestrator
        .run_all(&plans, config.concurrency as usize, |_| progress.inc(1))
        .await;
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    orchestrator.stop();
    let tracker_stats: Vec<(ServiceName, Tracker)> = services
        .services
        .iter()
        .map(|s| (s.name, s.tracker.clone()))
        .collect();
    let stopped = services.stop(FLUSH_TIMEOUT).await;
    // A service's own error (e.g. it could not send a reply) explains a missing reply better than the timeout.
    stopped?;
    if let Some(store) = store {
        // Everything committed is on its way through the relay: wait until it is published.
        store.wait_published().await?;
    }
    let runs = runs?;
    let tracker_stats: Vec<(ServiceName, TrackerStats)> = tracker_stats
        .into_iter()
        .map(|(name, tracker)| (name, tracker.stats()))
        .collect();
    let kept_spool = if tracker_stats
        .iter()
        .all(|(_, s)| s.failed == 0 && s.spooled == 0)
    {
        let _ = std::fs::remove_dir_all(spool_root);
        None
    } else {
        Some(spool_root.to_owned())
    };

    let settle = if config.role == Role::All {
        Duration::ZERO
    } else {
        REMOTE_SETTLE
    };
    let read = tokio::task::block_in_place(|| {
        read_until_settled(kafka, tracker_start, &plans, settle, recording)
    })?;
    if let Some(path) = &config.emit_json {
        write_json_lines(path, &read.events)?;
    }
    let (timelines, duplicates) = consistency::group_by_saga(&read.events);
    let consistency = check(recording, &plans, &timelines);
    let disagreements = runs
        .iter()
        .filter_map(|run| {
            let recorded = consistency.states.get(&run.saga_id).copied()?;
            (recorded != FinalState::Incomplete && recorded != run.state).then(|| Violation {
                saga_id: run.saga_id.clone(),
                problem: format!(
                    "recorded final state {recorded}, but the order service saw {}",
                    run.state
                ),
            })
        })
        .collect();
    let deduplicated: Vec<SagaEvent> = timelines.values().flatten().cloned().collect();
    let summary = summary::summarize(&deduplicated, &consistency, &order_saga_shape());
    let tracker = match central {
        Some(central) => Some(
            ask_the_tracker(
                central,
                &crate::saga::saga_id_prefix(&run_id),
                &read.events,
                &consistency,
                &timelines,
            )
            .await?,
        ),
        None => None,
    };
    Ok(DemoOutcome::Report(Box::new(RunReport {
        run_id,
        kafka: kafka.describe(),
        config,
        plans,
        runs,
        elapsed,
        events: read.events,
        duplicates,
        undecodable: read.undecodable,
        other_sagas: read.other_sagas,
        timelines,
        consistency,
        disagreements,
        summary,
        tracker_stats,
        kept_spool,
        tracker,
        outbox: None,
    })))
}

/// Waits until the tracker service has stored every event read back, then asks its API about the saga whose
/// timeline the report shows (the first saga when none failed).
async fn ask_the_tracker(
    central: &central_tracker::InProcessTracker,
    run_prefix: &str,
    events: &[SagaEvent],
    consistency: &Consistency,
    timelines: &BTreeMap<String, Vec<SagaEvent>>,
) -> Result<TrackerReport, DemoError> {
    let ids: HashSet<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
    let waited = central
        .wait_for_events(&ids, central_tracker::INGEST_TIMEOUT)
        .await?;
    let saga_id = crate::report::timeline::pick_failed_saga(consistency, timelines)
        .map(|(id, _)| id)
        .or_else(|| timelines.keys().next().map(String::as_str))
        .ok_or_else(|| DemoError::Internal("no saga recorded any event".into()))?;
    central.fetch(saga_id, run_prefix, waited, ids.len()).await
}

/// Checks every planned saga's timeline; a saga planned to hang (`--hang-sagas`) that stops after
/// [`HANG_AFTER`](orchestrator::HANG_AFTER) is what was asked for, not a problem.
fn check(
    recording: consistency::Recording,
    plans: &[SagaPlan],
    timelines: &BTreeMap<String, Vec<SagaEvent>>,
) -> Consistency {
    let mut verdict = consistency::check_all_recorded(
        recording,
        OrderSaga::NAME,
        &order_saga_shape(),
        plans.iter().map(|p| p.saga_id.as_str()),
        timelines,
    );
    let hanging: HashSet<&str> = plans
        .iter()
        .filter(|p| p.fate == orchestrator::Fate::HangAfterReserve)
        .map(|p| p.saga_id.as_str())
        .collect();
    let planned = format!(
        "saga stops after {}: it neither completed nor failed",
        orchestrator::HANG_AFTER.wire_name()
    );
    verdict
        .violations
        .retain(|v| !(hanging.contains(v.saga_id.as_str()) && v.problem == planned));
    verdict
}

/// Reads this run's events back from `saga.tracker`. Services in other processes flush on their own schedule:
/// while some timeline is still unfinished, read what arrived since, for up to `settle`.
fn read_until_settled(
    kafka: &Kafka,
    start: &bus::Offsets,
    plans: &[SagaPlan],
    settle: Duration,
    recording: Recording,
) -> Result<consume::ReadBack, DemoError> {
    let saga_ids: HashSet<String> = plans.iter().map(|p| p.saga_id.clone()).collect();
    let deadline = Instant::now() + settle;
    let mut read = consume::read_back(kafka, TRACKER_TOPIC, start, &saga_ids, READ_BACK_TIMEOUT)?;
    loop {
        let (timelines, _) = consistency::group_by_saga(&read.events);
        let verdict = check(recording, plans, &timelines);
        if verdict.is_consistent() || Instant::now() >= deadline {
            return Ok(read);
        }
        std::thread::sleep(Duration::from_millis(200));
        let later = consume::read_back(
            kafka,
            TRACKER_TOPIC,
            &read.end.clone(),
            &saga_ids,
            READ_BACK_TIMEOUT,
        )?;
        read.extend(later);
    }
}

fn progress_bar(config: &DemoConfig) -> indicatif::ProgressBar {
    if !config.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(u64::from(config.sagas));
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} sagas [{bar:40}] {pos}/{len}  {elapsed}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Writes every event as one JSON object per line.
fn write_json_lines(path: &Path, events: &[SagaEvent]) -> Result<(), DemoError> {
    let error = |source| DemoError::EmitJson {
        path: path.to_owned(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(error)?);
    for event in events {
        serde_json::to_writer(&mut out, event).map_err(|e| error(std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(error)?;
    }
    out.flush().map_err(error)
}

/// Roles `product` / `payment`: serve commands until Ctrl-C.
async fn serve_until_ctrl_c(
    kafka: &Kafka,
    services: ServiceSet,
    spool_root: &Path,
) -> Result<DemoOutcome, DemoError> {
    for service in &services.services {
        eprintln!(
            "{} serving {} on {}; Ctrl-C to stop",
            service.name,
            bus::command_topic(service.name),
            kafka.describe()
        );
    }
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| DemoError::Internal(format!("waiting for Ctrl-C: {e}")))?;
    let summary: Vec<(ServiceName, _, _, Tracker)> = services
        .services
        .iter()
        .map(|s| {
            (
                s.name,
                s.handled.clone(),
                s.other_runs.clone(),
                s.tracker.clone(),
            )
        })
        .collect();
    services.stop(FLUSH_TIMEOUT).await?;
    let served: Vec<Served> = summary
        .into_iter()
        .map(|(name, handled, other_runs, tracker)| Served {
            name,
            handled: handled.load(std::sync::atomic::Ordering::Relaxed),
            other_runs: other_runs.load(std::sync::atomic::Ordering::Relaxed),
            stats: tracker.stats(),
        })
        .collect();
    if served.iter().all(|s| s.stats.failed == 0) {
        let _ = std::fs::remove_dir_all(spool_root);
    } else {
        eprintln!(
            "some events could not be delivered; they are kept in the spool at {}",
            spool_root.display()
        );
    }
    Ok(DemoOutcome::Served(served))
}
