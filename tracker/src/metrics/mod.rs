//! Prometheus metrics through `prometheus-client`, served in the text exposition format (0.0.4).
//!
//! The metric names are the contract with `deploy/grafana/saga-tracker.json` and `deploy/prometheus/alerts.yml`
//! (the `deploy_files_use_exported_metrics` test parses `/metrics` and checks it). Counters and histograms count
//! what this process ingested since it started; their `saga_type` and `step` labels are capped ([`labels`]).
//! `saga_tracker_sagas` and `saga_tracker_stuck_sagas` come from the database, refreshed in the background by
//! [`refresh`] (every replica reports the same values); a scrape never queries the database.

pub mod labels;
pub mod refresh;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use saga_tracker_core::SagaEvent;

use crate::db::SagaState;
use crate::ingest::stall::StallWatch;
pub use labels::{LabelLimits, OTHER};

/// Events stored (new, not duplicates), by saga type, step and status.
pub const EVENTS_INGESTED: &str = "saga_tracker_events_ingested_total";
/// Events skipped because their id was already stored.
pub const EVENTS_DUPLICATE: &str = "saga_tracker_events_duplicate_total";
/// Sagas per derived state.
pub const SAGAS: &str = "saga_tracker_sagas";
/// Step handler durations (terminal events with a duration).
pub const STEP_DURATION: &str = "saga_tracker_step_duration_seconds";
/// Sagas not terminal and silent for the configured time.
pub const STUCK_SAGAS: &str = "saga_tracker_stuck_sagas";
/// The configured silence after which a saga counts as stuck.
pub const STUCK_AFTER: &str = "saga_tracker_stuck_after_seconds";
/// Messages behind the end of each partition (librdkafka statistics).
pub const CONSUMER_LAG: &str = "saga_tracker_consumer_lag";
/// Messages sent to the DLQ, by reason.
pub const DLQ_MESSAGES: &str = "saga_tracker_dlq_messages_total";
/// Dead letters the DLQ topic refused for good, kept in the `saga_dlq_local` table instead, by cause.
pub const DLQ_LOCAL: &str = "saga_tracker_dlq_local_messages_total";
/// Failed attempts to write a batch or reach Kafka (each is retried).
pub const INGEST_ERRORS: &str = "saga_tracker_ingest_errors_total";
/// 1 when the database answered the last background refresh.
pub const DATABASE_UP: &str = "saga_tracker_database_up";
/// Events whose `saga_type` or `step` label value was over the cap (reported as `other`), by label.
pub const LABEL_VALUES_DROPPED: &str = "saga_tracker_metric_label_values_dropped_total";

/// Events missing on one side in the latest `reconcile` run (from the `reconcile_runs` table), by `side`.
pub const RECONCILE_MISSING: &str = "saga_tracker_reconcile_missing_events";
/// When the latest `reconcile` run ran (Unix seconds, 0 = never).
pub const RECONCILE_LAST_RUN: &str = "saga_tracker_reconcile_last_run_timestamp_seconds";

/// 1 for a partition whose messages wait without progress for `--stall-after-seconds` (see [`StallWatch`]).
pub const PARTITION_STALLED: &str = "saga_tracker_partition_stalled";

/// Every metric name a scrape shows (counters with their `_total`); histograms add `_bucket`, `_sum`, `_count`.
/// `saga_tracker_partition_stalled` has a sample per partition once ingestion has seen it.
pub const ALL: [&str; 15] = [
    PARTITION_STALLED,
    RECONCILE_MISSING,
    RECONCILE_LAST_RUN,
    EVENTS_INGESTED,
    EVENTS_DUPLICATE,
    SAGAS,
    STEP_DURATION,
    STUCK_SAGAS,
    STUCK_AFTER,
    CONSUMER_LAG,
    DLQ_MESSAGES,
    DLQ_LOCAL,
    INGEST_ERRORS,
    DATABASE_UP,
    LABEL_VALUES_DROPPED,
];

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The kinds of failed (retried) operations counted in `saga_tracker_ingest_errors_total`.
pub const ERROR_KINDS: [&str; 3] = ["database", "dlq", "kafka"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    saga_type: String,
    step: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SideLabels {
    side: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LagLabels {
    topic: String,
    partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LabelLabels {
    label: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// What the database said at the last background refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbSnapshot {
    /// Sagas per state.
    pub sagas_by_state: BTreeMap<SagaState, i64>,
    /// Stuck sagas.
    pub stuck: i64,
    /// The latest `reconcile` run, if any.
    pub reconcile: Option<crate::ops::reconcile::LastRun>,
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    ingested: Family<StepLabels, Counter>,
    duplicates: Counter,
    durations: Family<StepLabels, Histogram, fn() -> Histogram>,
    dlq: Family<ReasonLabels, Counter>,
    dlq_local: Family<CauseLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    lag: Family<LagLabels, Gauge>,
    sagas: Family<StatusLabels, Gauge>,
    stuck: Gauge,
    stuck_after: Gauge,
    database_up: Gauge,
    dropped: Family<LabelLabels, Counter>,
    stalled: Family<LagLabels, Gauge>,
    reconcile_missing: Family<SideLabels, Gauge>,
    reconcile_last_run: Gauge,
    stall: StallWatch,
    admitted: Mutex<labels::Admitted>,
    ingested_total: AtomicU64,
    dlq_total: AtomicU64,
    lag_by_partition: Mutex<BTreeMap<(String, i32), i64>>,
    lag_total: AtomicI64,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("ingested_total", &self.ingested_total)
            .field("dlq_total", &self.dlq_total)
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(LabelLimits::DEFAULT, StallWatch::default().after())
    }
}

impl Metrics {
    /// Metrics whose `saga_type`/`step` labels are capped by `limits`, and whose stall watch reports a
    /// partition stalled after `stall_after` without progress.
    pub fn new(limits: LabelLimits, stall_after: std::time::Duration) -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            ingested: Family::default(),
            duplicates: Counter::default(),
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            dlq: Family::default(),
            dlq_local: Family::default(),
            errors: Family::default(),
            lag: Family::default(),
            sagas: Family::default(),
            stuck: Gauge::default(),
            stuck_after: Gauge::default(),
            database_up: Gauge::default(),
            dropped: Family::default(),
            stalled: Family::default(),
            reconcile_missing: Family::default(),
            reconcile_last_run: Gauge::default(),
            stall: StallWatch::new(stall_after),
            admitted: Mutex::new(labels::Admitted::new(limits)),
            ingested_total: AtomicU64::new(0),
            dlq_total: AtomicU64::new(0),
            lag_by_partition: Mutex::new(BTreeMap::new()),
            lag_total: AtomicI64::new(-1),
            registry: Registry::default(),
        };
        let counter = |name: &str| name.strip_suffix("_total").unwrap_or(name).to_owned();
        registry.register(
            counter(EVENTS_INGESTED),
            "Saga events stored (duplicates excluded)",
            m.ingested.clone(),
        );
        registry.register(
            counter(EVENTS_DUPLICATE),
            "Saga events skipped because their event id was already stored",
            m.duplicates.clone(),
        );
        registry.register(
            STEP_DURATION,
            "Step handler duration, from terminal events",
            m.durations.clone(),
        );
        registry.register(
            counter(DLQ_MESSAGES),
            "Messages that did not decode or validate, sent to the DLQ",
            m.dlq.clone(),
        );
        registry.register(
            counter(DLQ_LOCAL),
            "Dead letters the DLQ topic refused for good (too large, not authorized, invalid, unknown topic), kept in the saga_dlq_local table",
            m.dlq_local.clone(),
        );
        registry.register(
            counter(INGEST_ERRORS),
            "Failed batch writes or Kafka operations (retried)",
            m.errors.clone(),
        );
        registry.register(
            CONSUMER_LAG,
            "Messages between the committed offset and the end of the partition",
            m.lag.clone(),
        );
        registry.register(
            DATABASE_UP,
            "1 when the database answered the last background refresh",
            m.database_up.clone(),
        );
        registry.register(
            STUCK_AFTER,
            "Silence after which a non-terminal saga counts as stuck",
            m.stuck_after.clone(),
        );
        registry.register(
            SAGAS,
            "Sagas per derived state (from the database, refreshed in the background)",
            m.sagas.clone(),
        );
        registry.register(
            STUCK_SAGAS,
            "Sagas not terminal and silent for longer than the stuck threshold (from the database)",
            m.stuck.clone(),
        );
        registry.register(
            counter(LABEL_VALUES_DROPPED),
            "Events whose saga_type or step label value was over the cap and reported as other",
            m.dropped.clone(),
        );
        registry.register(
            PARTITION_STALLED,
            "1 when messages wait in the partition and ingestion made no progress on it for the stall threshold",
            m.stalled.clone(),
        );
        registry.register(
            RECONCILE_MISSING,
            "Events missing on one side in the latest reconcile run (side=tracker: in an outbox, not in the tracker)",
            m.reconcile_missing.clone(),
        );
        registry.register(
            RECONCILE_LAST_RUN,
            "When the latest reconcile run ran (Unix seconds, 0 = never)",
            m.reconcile_last_run.clone(),
        );
        // Series that exist from the start, so rate() and absent() have something to look at.
        for side in ["tracker", "outbox"] {
            drop(m.reconcile_missing.get_or_create(&SideLabels { side }));
        }
        for kind in ERROR_KINDS {
            drop(m.errors.get_or_create(&KindLabels { kind }));
        }
        for state in SagaState::ALL {
            drop(m.sagas.get_or_create(&StatusLabels {
                status: state.as_str(),
            }));
        }
        drop(m.dlq.get_or_create(&ReasonLabels {
            reason: "none".into(),
        }));
        for cause in crate::ingest::dlq::PERMANENT_CAUSES {
            drop(m.dlq_local.get_or_create(&CauseLabels { cause }));
        }
        Metrics { registry, ..m }
    }

    /// Metrics with the default label caps and the given stall threshold.
    pub fn with_stall_after(stall_after: std::time::Duration) -> Metrics {
        Metrics::new(LabelLimits::DEFAULT, stall_after)
    }

    /// Progress per partition.
    pub fn stall(&self) -> &StallWatch {
        &self.stall
    }

    /// Counts a newly stored event and observes its duration.
    pub fn event_stored(&self, event: &SagaEvent) {
        let (saga_type, step, dropped) = self
            .admitted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(&event.saga_type, &event.step);
        if let Some(d) = dropped {
            self.dropped
                .get_or_create(&LabelLabels { label: d.label() })
                .inc();
        }
        let key = StepLabels {
            saga_type,
            step,
            status: event.status.as_str(),
        };
        if let Some(micros) = event.duration_micros.filter(|d| *d >= 0) {
            self.durations
                .get_or_create(&key)
                .observe(micros as f64 / 1e6);
        }
        self.ingested.get_or_create(&key).inc();
        self.ingested_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts events skipped as duplicates.
    pub fn duplicates(&self, n: u64) {
        self.duplicates.inc_by(n);
    }

    /// Counts a message sent to the DLQ (`reason` is one of the DLQ's short codes).
    pub fn dlq(&self, reason: &str) {
        self.dlq
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
        self.dlq_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a dead letter kept in `saga_dlq_local` (`cause` is one of
    /// [`PERMANENT_CAUSES`](crate::ingest::dlq::PERMANENT_CAUSES)).
    pub fn dlq_local(&self, cause: &'static str) {
        self.dlq_local.get_or_create(&CauseLabels { cause }).inc();
    }

    /// Dead letters kept in `saga_dlq_local` by this process.
    pub fn dlq_local_total(&self) -> u64 {
        crate::ingest::dlq::PERMANENT_CAUSES
            .into_iter()
            .map(|cause| self.dlq_local.get_or_create(&CauseLabels { cause }).get())
            .sum()
    }

    /// Counts a failed (and retried) write: `kind` is one of [`ERROR_KINDS`].
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// Sets the lag of one partition.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&LagLabels {
                topic: topic.to_owned(),
                partition,
            })
            .set(lag);
        let mut by_partition = self
            .lag_by_partition
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by_partition.insert((topic.to_owned(), partition), lag);
        self.lag_total
            .store(by_partition.values().sum(), Ordering::Relaxed);
    }

    /// Sets the configured stuck threshold.
    pub fn set_stuck_after(&self, seconds: u64) {
        self.stuck_after
            .set(i64::try_from(seconds).unwrap_or(i64::MAX));
    }

    /// Records the result of a background refresh: the database's values, or `None` when it did not answer
    /// (`saga_tracker_database_up` 0; the saga gauges keep their last values).
    pub fn set_database(&self, snapshot: Option<&DbSnapshot>) {
        self.database_up.set(i64::from(snapshot.is_some()));
        if let Some(db) = snapshot {
            for state in SagaState::ALL {
                self.sagas
                    .get_or_create(&StatusLabels {
                        status: state.as_str(),
                    })
                    .set(db.sagas_by_state.get(&state).copied().unwrap_or(0));
            }
            self.stuck.set(db.stuck);
            let last = db.reconcile.unwrap_or_default();
            self.reconcile_missing
                .get_or_create(&SideLabels { side: "tracker" })
                .set(last.missing_in_tracker);
            self.reconcile_missing
                .get_or_create(&SideLabels { side: "outbox" })
                .set(last.missing_in_outbox);
            self.reconcile_last_run.set(last.ran_at);
        }
    }

    /// Events stored by this process (all labels).
    pub fn ingested_total(&self) -> u64 {
        self.ingested_total.load(Ordering::Relaxed)
    }

    /// Duplicates skipped by this process.
    pub fn duplicate_total(&self) -> u64 {
        self.duplicates.get()
    }

    /// Messages sent to the DLQ by this process.
    pub fn dlq_total(&self) -> u64 {
        self.dlq_total.load(Ordering::Relaxed)
    }

    /// Failed (retried) operations of one kind: `database`, `dlq` or `kafka`.
    pub fn errors_total(&self, kind: &str) -> u64 {
        ERROR_KINDS
            .into_iter()
            .find(|k| *k == kind)
            .map_or(0, |kind| {
                self.errors.get_or_create(&KindLabels { kind }).get()
            })
    }

    /// The summed lag over partitions, if statistics arrived.
    pub fn total_lag(&self) -> Option<i64> {
        let lag = self.lag_total.load(Ordering::Relaxed);
        (lag >= 0).then_some(lag)
    }

    /// The text exposition (no database query: the database gauges are refreshed in the background).
    pub fn render(&self) -> String {
        for ((topic, partition), stalled) in self.stall.partitions() {
            self.stalled
                .get_or_create(&LagLabels { topic, partition })
                .set(i64::from(stalled));
        }
        let mut out = String::with_capacity(8192);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
    }

    fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected {other:?}"),
        }
    }

    #[test]
    fn renders_counters_histograms_and_escapes() {
        let m = Metrics::default();
        let mut e = saga_tracker_core::testing::sample_event();
        e.step = "we\"ird\\step\n".into();
        e.duration_micros = Some(20_000);
        m.event_stored(&e);
        m.dlq("bad_magic");
        m.set_lag("saga.tracker", 0, 7);
        m.set_stuck_after(900);
        m.set_database(Some(&DbSnapshot {
            sagas_by_state: [(SagaState::Running, 3)].into(),
            stuck: 2,
            reconcile: Some(crate::ops::reconcile::LastRun {
                missing_in_tracker: 4,
                missing_in_outbox: 0,
                ran_at: 1_732_406_400,
                ok: false,
            }),
        }));
        let text = m.render();
        assert!(text.contains(r#"step="we\"ird\\step\n""#), "{text}");
        let scrape = parsed(&text);
        assert_eq!(value(&scrape, SAGAS, &[("status", "RUNNING")]), 3.0);
        assert_eq!(value(&scrape, SAGAS, &[("status", "FAILED")]), 0.0);
        assert_eq!(value(&scrape, STUCK_SAGAS, &[]), 2.0);
        assert_eq!(value(&scrape, STUCK_AFTER, &[]), 900.0);
        assert_eq!(
            value(&scrape, RECONCILE_MISSING, &[("side", "tracker")]),
            4.0
        );
        assert_eq!(value(&scrape, RECONCILE_LAST_RUN, &[]), 1_732_406_400.0);
        assert_eq!(value(&scrape, DATABASE_UP, &[]), 1.0);
        assert_eq!(
            value(&scrape, DLQ_MESSAGES, &[("reason", "bad_magic")]),
            1.0
        );
        assert_eq!(
            value(
                &scrape,
                CONSUMER_LAG,
                &[("topic", "saga.tracker"), ("partition", "0")]
            ),
            7.0
        );
        assert_eq!(
            value(&scrape, EVENTS_INGESTED, &[("status", "STARTED")]),
            1.0
        );
        let histogram = scrape
            .samples
            .iter()
            .find(|s| s.metric == STEP_DURATION)
            .expect("histogram");
        let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
            panic!("{histogram:?}");
        };
        let count_at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
        assert_eq!(count_at(0.01), Some(0.0));
        assert_eq!(count_at(0.025), Some(1.0));
        m.set_database(None);
        assert_eq!(value(&parsed(&m.render()), DATABASE_UP, &[]), 0.0);
    }

    #[test]
    fn twenty_thousand_step_names_keep_the_exposition_small() {
        let m = Metrics::default();
        let mut e = saga_tracker_core::testing::sample_event();
        for i in 0..20_000 {
            e.step = format!("step-{i}");
            e.status = saga_tracker_core::StepStatus::Started;
            e.duration_micros = None;
            m.event_stored(&e);
            e.status = saga_tracker_core::StepStatus::Succeeded;
            e.duration_micros = Some(1_000 + i);
            m.event_stored(&e);
        }
        let text = m.render();
        assert!(text.len() < 100 * 1024, "{} bytes", text.len());
        let scrape = parsed(&text);
        let capped = 20_000 - LabelLimits::DEFAULT.max_steps as u64;
        assert_eq!(
            value(&scrape, LABEL_VALUES_DROPPED, &[("label", "step")]),
            (2 * capped) as f64
        );
        assert_eq!(
            value(
                &scrape,
                EVENTS_INGESTED,
                &[("step", OTHER), ("status", "SUCCEEDED")]
            ),
            capped as f64
        );
        assert_eq!(m.ingested_total(), 40_000);
    }
}
