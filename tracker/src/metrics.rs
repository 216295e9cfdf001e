//! Prometheus metrics, written in the text exposition format by hand.
//!
//! The metric names are the contract with `deploy/grafana/saga-tracker.json` and `deploy/prometheus/alerts.yml`
//! (the `deploy_files_use_exported_metrics` test checks it). Counters and histograms count what this process
//! ingested since it started; `saga_tracker_sagas` and `saga_tracker_stuck_sagas` are read from the database at
//! scrape time, so every replica reports the same values.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use saga_tracker_core::SagaEvent;

use crate::db::SagaState;
use crate::ingest::stall::StallWatch;

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
/// Failed attempts to write a batch or reach Kafka (each is retried).
pub const INGEST_ERRORS: &str = "saga_tracker_ingest_errors_total";
/// 1 when the database answered the scrape's queries.
pub const DATABASE_UP: &str = "saga_tracker_database_up";
/// 1 for a partition whose messages wait without progress for `--stall-after-seconds` (see [`StallWatch`]).
pub const PARTITION_STALLED: &str = "saga_tracker_partition_stalled";

const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

type StepKey = (String, String, String);

#[derive(Debug, Default)]
struct Inner {
    ingested: BTreeMap<StepKey, u64>,
    duplicates: u64,
    durations: BTreeMap<StepKey, Histogram>,
    dlq: BTreeMap<String, u64>,
    errors: BTreeMap<&'static str, u64>,
    lag: BTreeMap<(String, i32), i64>,
}

/// What the database said at scrape time.
#[derive(Debug, Clone, Default)]
pub struct DbSnapshot {
    /// Sagas per state name.
    pub sagas_by_state: BTreeMap<String, i64>,
    /// Stuck sagas.
    pub stuck: i64,
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    stall: StallWatch,
}

impl Metrics {
    /// Metrics whose stall watch reports a partition stalled after `stall_after` without progress.
    pub fn with_stall_after(stall_after: std::time::Duration) -> Metrics {
        Metrics {
            inner: Mutex::default(),
            stall: StallWatch::new(stall_after),
        }
    }

    /// Progress per partition.
    pub fn stall(&self) -> &StallWatch {
        &self.stall
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a newly stored event and observes its duration.
    pub fn event_stored(&self, event: &SagaEvent) {
        let key = (
            event.saga_type.clone(),
            event.step.clone(),
            event.status.as_str().to_owned(),
        );
        let mut inner = self.lock();
        if let Some(micros) = event.duration_micros.filter(|d| *d >= 0) {
            let seconds = micros as f64 / 1e6;
            let h = inner.durations.entry(key.clone()).or_default();
            h.count += 1;
            h.sum += seconds;
            for (i, le) in BUCKETS.iter().enumerate() {
                if seconds <= *le {
                    h.counts[i] += 1;
                }
            }
        }
        *inner.ingested.entry(key).or_default() += 1;
    }

    /// Counts events skipped as duplicates.
    pub fn duplicates(&self, n: u64) {
        self.lock().duplicates += n;
    }

    /// Counts a message sent to the DLQ.
    pub fn dlq(&self, reason: &str) {
        *self.lock().dlq.entry(reason.to_owned()).or_default() += 1;
    }

    /// Counts a failed (and retried) write: `kind` is `database`, `dlq` or `kafka`.
    pub fn error(&self, kind: &'static str) {
        *self.lock().errors.entry(kind).or_default() += 1;
    }

    /// Sets the lag of one partition.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lock().lag.insert((topic.to_owned(), partition), lag);
    }

    /// Events stored by this process (all labels).
    pub fn ingested_total(&self) -> u64 {
        self.lock().ingested.values().sum()
    }

    /// Duplicates skipped by this process.
    pub fn duplicate_total(&self) -> u64 {
        self.lock().duplicates
    }

    /// Messages sent to the DLQ by this process.
    pub fn dlq_total(&self) -> u64 {
        self.lock().dlq.values().sum()
    }

    /// Failed (retried) operations of one kind: `database`, `dlq` or `kafka`.
    pub fn errors_total(&self, kind: &str) -> u64 {
        self.lock().errors.get(kind).copied().unwrap_or(0)
    }

    /// The summed lag over partitions, if statistics arrived.
    pub fn total_lag(&self) -> Option<i64> {
        let inner = self.lock();
        (!inner.lag.is_empty()).then(|| inner.lag.values().sum())
    }

    /// The text exposition. `db` is `None` when the database did not answer.
    pub fn render(&self, db: Option<&DbSnapshot>, stuck_after_seconds: u64) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            EVENTS_INGESTED,
            "counter",
            "Saga events stored (duplicates excluded).",
        );
        for ((ty, step, status), n) in &inner.ingested {
            let _ = writeln!(
                out,
                "{EVENTS_INGESTED}{{{}}} {n}",
                labels(&[("saga_type", ty), ("step", step), ("status", status)])
            );
        }
        header(
            &mut out,
            EVENTS_DUPLICATE,
            "counter",
            "Saga events skipped because their event id was already stored.",
        );
        let _ = writeln!(out, "{EVENTS_DUPLICATE} {}", inner.duplicates);

        header(
            &mut out,
            STEP_DURATION,
            "histogram",
            "Step handler duration, from terminal events.",
        );
        for ((ty, step, status), h) in &inner.durations {
            let base = [
                ("saga_type", ty.as_str()),
                ("step", step.as_str()),
                ("status", status.as_str()),
            ];
            for (i, le) in BUCKETS.iter().enumerate() {
                let le = le.to_string();
                let mut l = base.to_vec();
                l.push(("le", &le));
                let _ = writeln!(
                    out,
                    "{STEP_DURATION}_bucket{{{}}} {}",
                    labels(&l),
                    h.counts[i]
                );
            }
            let mut l = base.to_vec();
            l.push(("le", "+Inf"));
            let _ = writeln!(out, "{STEP_DURATION}_bucket{{{}}} {}", labels(&l), h.count);
            let _ = writeln!(out, "{STEP_DURATION}_sum{{{}}} {}", labels(&base), h.sum);
            let _ = writeln!(
                out,
                "{STEP_DURATION}_count{{{}}} {}",
                labels(&base),
                h.count
            );
        }

        header(
            &mut out,
            DLQ_MESSAGES,
            "counter",
            "Messages that did not decode or validate, sent to the DLQ.",
        );
        if inner.dlq.is_empty() {
            let _ = writeln!(out, "{DLQ_MESSAGES}{{reason=\"none\"}} 0");
        }
        for (reason, n) in &inner.dlq {
            let _ = writeln!(
                out,
                "{DLQ_MESSAGES}{{{}}} {n}",
                labels(&[("reason", reason)])
            );
        }
        header(
            &mut out,
            INGEST_ERRORS,
            "counter",
            "Failed batch writes or Kafka operations (retried).",
        );
        for kind in ["database", "dlq", "kafka"] {
            let _ = writeln!(
                out,
                "{INGEST_ERRORS}{{kind=\"{kind}\"}} {}",
                inner.errors.get(kind).copied().unwrap_or(0)
            );
        }
        header(
            &mut out,
            CONSUMER_LAG,
            "gauge",
            "Messages between the committed offset and the end of the partition.",
        );
        for ((topic, partition), lag) in &inner.lag {
            let p = partition.to_string();
            let _ = writeln!(
                out,
                "{CONSUMER_LAG}{{{}}} {lag}",
                labels(&[("topic", topic), ("partition", &p)])
            );
        }
        drop(inner);
        header(
            &mut out,
            PARTITION_STALLED,
            "gauge",
            "1 when messages wait in the partition and ingestion made no progress on it for the stall threshold.",
        );
        for ((topic, partition), stalled) in self.stall.partitions() {
            let p = partition.to_string();
            let _ = writeln!(
                out,
                "{PARTITION_STALLED}{{{}}} {}",
                labels(&[("topic", &topic), ("partition", &p)]),
                u8::from(stalled)
            );
        }

        header(
            &mut out,
            DATABASE_UP,
            "gauge",
            "1 when the database answered this scrape.",
        );
        let _ = writeln!(out, "{DATABASE_UP} {}", u8::from(db.is_some()));
        header(
            &mut out,
            STUCK_AFTER,
            "gauge",
            "Silence after which a non-terminal saga counts as stuck.",
        );
        let _ = writeln!(out, "{STUCK_AFTER} {stuck_after_seconds}");
        if let Some(db) = db {
            header(&mut out, SAGAS, "gauge", "Sagas per derived state.");
            for state in SagaState::ALL {
                let n = db.sagas_by_state.get(state.as_str()).copied().unwrap_or(0);
                let _ = writeln!(out, "{SAGAS}{{status=\"{}\"}} {n}", state.as_str());
            }
            header(
                &mut out,
                STUCK_SAGAS,
                "gauge",
                "Sagas not terminal and silent for longer than the stuck threshold.",
            );
            let _ = writeln!(out, "{STUCK_SAGAS} {}", db.stuck);
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_escapes() {
        let m = Metrics::default();
        let mut e = saga_tracker_core::testing::sample_event();
        e.step = "we\"ird\\step\n".into();
        e.duration_micros = Some(20_000);
        m.event_stored(&e);
        m.dlq("bad_magic");
        m.set_lag("saga.tracker", 0, 7);
        let text = m.render(
            Some(&DbSnapshot {
                sagas_by_state: [("RUNNING".into(), 3)].into(),
                stuck: 2,
            }),
            900,
        );
        assert!(text.contains(r#"step="we\"ird\\step\n""#), "{text}");
        assert!(text.contains(r#"saga_tracker_step_duration_seconds_bucket{saga_type="OrderSaga",step="we\"ird\\step\n",status="STARTED",le="0.01"} 0"#), "{text}");
        assert!(text.contains(r#",le="0.025"} 1"#), "{text}");
        assert!(text.contains(r#"saga_tracker_sagas{status="RUNNING"} 3"#));
        assert!(text.contains(r#"saga_tracker_sagas{status="FAILED"} 0"#));
        assert!(text.contains("saga_tracker_stuck_sagas 2"));
        assert!(text.contains(r#"saga_tracker_dlq_messages_total{reason="bad_magic"} 1"#));
        assert!(
            text.contains(r#"saga_tracker_consumer_lag{topic="saga.tracker",partition="0"} 7"#)
        );
        let no_db = m.render(None, 900);
        assert!(no_db.contains("saga_tracker_database_up 0"));
        assert!(!no_db.contains("saga_tracker_stuck_sagas "));
    }
}
