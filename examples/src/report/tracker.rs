//! The `--with-tracker` section of the report: what the in-process tracker service's API served, in the
//! service's own API types ([`saga_tracker_service::api::model`]).

use std::fmt::Write as _;
use std::time::Duration;

use saga_tracker_service::api::model::{SagaRow, Stats, TimelineEntry};
use uuid::Uuid;

use super::summary::ms;
use super::table::Table;

/// What the tracker service said about the run.
#[derive(Debug, Clone)]
pub struct TrackerReport {
    /// The API's base URL (gone once the demo ends).
    pub api_url: String,
    /// The PostgreSQL schema the service stored into.
    pub schema: String,
    /// Events of this run the service stored.
    pub run_events: usize,
    /// How long the demo waited for the service to store them after reading them back.
    pub ingest_wait: Duration,
    /// `GET /api/v1/sagas/{id}` of the shown saga.
    pub saga: SagaRow,
    /// The events of `GET /api/v1/sagas/{id}/timeline` of the shown saga.
    pub timeline: Vec<TimelineEntry>,
    /// `GET /api/v1/stats`: sagas per derived state, stuck sagas, of everything the service stored (its schema
    /// can also hold sagas of earlier runs, read when a start offset was too early).
    pub stats: Stats,
    /// [`stats`](TrackerReport::stats) counted over this run's sagas only (saga ids starting with
    /// [`run_prefix`](TrackerReport::run_prefix)): what the demo and its tests count.
    pub run_stats: Stats,
    /// The start of this run's saga ids ([`crate::saga::saga_id_prefix`]).
    pub run_prefix: String,
    /// Headline `/metrics` lines.
    pub metrics_lines: Vec<String>,
    /// Whether the schema was kept (`--keep-tracker-data`) rather than dropped.
    pub kept: bool,
    /// Whether the service keeps serving after the report (`--serve`).
    pub serving: bool,
}

impl TrackerReport {
    /// The tracker section of the printed report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.saga;
        let _ = writeln!(
            out,
            "Tracker service (in-process saga-tracker-service, API {}, schema {}): stored all {} events of this run ({:.2} s after read-back)",
            self.api_url,
            self.schema,
            self.run_events,
            self.ingest_wait.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "Timeline of {} as served by GET {}/api/v1/sagas/{}/timeline",
            s.saga_id, self.api_url, s.saga_id
        );
        let _ = writeln!(
            out,
            "  derived state {} (failed step {}, pending compensations {}), {} events from {}",
            s.status,
            s.failed_step.as_deref().unwrap_or("-"),
            if s.pending_compensations.is_empty() {
                "none".to_owned()
            } else {
                s.pending_compensations.join(", ")
            },
            s.event_count,
            s.services.join(", ")
        );
        let first = self.timeline.first().map(|e| e.event.recorded_at);
        let index_of = |id: &Uuid| {
            self.timeline
                .iter()
                .position(|e| e.event.event_id == *id)
                .map_or_else(|| "?".to_owned(), |i| format!("#{}", i + 1))
        };
        let mut table = Table::new(&[
            "#", "offset", "service", "step", "status", "duration", "error", "link",
        ])
        .right(0)
        .right(1)
        .right(5);
        for (i, entry) in self.timeline.iter().enumerate() {
            let e = &entry.event;
            let offset = first
                .and_then(|f| (e.recorded_at - f).num_microseconds())
                .unwrap_or(0);
            let error = match (&e.error_kind, &e.error_message) {
                (Some(kind), Some(message)) => format!("{kind}: {message}"),
                (Some(text), None) | (None, Some(text)) => text.clone(),
                (None, None) => "-".to_owned(),
            };
            let link = if !entry.triggered_compensations.is_empty() {
                format!(
                    "triggered {}",
                    entry
                        .triggered_compensations
                        .iter()
                        .map(index_of)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else if let Some(by) = &entry.triggered_by {
                format!("compensates failure {}", index_of(by))
            } else {
                "-".to_owned()
            };
            table.row(vec![
                format!("{}", i + 1),
                format!("+{}", ms(offset)),
                e.service.clone(),
                e.step.clone(),
                e.status.to_string(),
                e.duration_micros.map_or_else(|| "-".to_owned(), ms),
                error,
                link,
            ]);
        }
        out.push_str(&table.render(2));
        let by_state: Vec<String> = self
            .stats
            .sagas_by_status
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(state, n)| format!("{state} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "Stats (GET {}/api/v1/stats): {} sagas: {}; stuck (not terminal, silent over {} s): {}",
            self.api_url,
            self.stats.sagas_total,
            by_state.join(", "),
            self.stats.stuck_after_seconds,
            self.stats.stuck_sagas
        );
        if self.run_stats.sagas_total != self.stats.sagas_total {
            let by_state: Vec<String> = self
                .run_stats
                .sagas_by_status
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(state, n)| format!("{state} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "This run's sagas ({}*): {}: {}; stuck: {} (the rest are earlier runs' sagas, read from before \
                 this run's start and not counted)",
                self.run_prefix,
                self.run_stats.sagas_total,
                by_state.join(", "),
                self.run_stats.stuck_sagas
            );
        }
        let _ = writeln!(out, "Metrics (GET {}/metrics, excerpt):", self.api_url);
        for line in &self.metrics_lines {
            let _ = writeln!(out, "  {line}");
        }
        if self.serving {
            let _ = writeln!(
                out,
                "Tracker service still serving (--serve); schema {} is {} when it stops.",
                self.schema,
                if self.kept { "kept" } else { "dropped" }
            );
        } else if self.kept {
            let _ = writeln!(
                out,
                "Tracker data kept in schema {} (--keep-tracker-data); the service has stopped.",
                self.schema
            );
        } else {
            let _ = writeln!(
                out,
                "Tracker service stopped; schema {} dropped.",
                self.schema
            );
        }
        out
    }
}
