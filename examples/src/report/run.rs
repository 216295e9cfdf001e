//! [`RunReport`]: everything a run found, and the text `order-saga-demo` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use saga_tracker::{SagaEvent, TrackerStats};

use super::consistency::{Consistency, FinalState, Violation};
use super::consume::Undecodable;
use super::summary::{self, Summary};
use super::tracker::TrackerReport;
use crate::bus::TRACKER_TOPIC;
use crate::cli::DemoConfig;
use crate::error::EXIT_INCONSISTENT;
use crate::orchestrator::{self, SagaPlan, SagaRun};
use crate::saga::ServiceName;
use crate::store::OutboxReport;

/// The report of a run, built from the events consumed back from `saga.tracker`.
#[derive(Debug)]
pub struct RunReport {
    /// The run's id (part of every saga id).
    pub run_id: String,
    /// Where Kafka was.
    pub kafka: String,
    /// The configuration.
    pub config: DemoConfig,
    /// The sagas that were run.
    pub plans: Vec<SagaPlan>,
    /// How each ended, as the order service saw it.
    pub runs: Vec<SagaRun>,
    /// How long the sagas took.
    pub elapsed: Duration,
    /// Every decoded event of this run, in the order read.
    pub events: Vec<SagaEvent>,
    /// Repeated deliveries of the same transition (dropped from the timelines).
    pub duplicates: usize,
    /// Messages of this run that did not decode.
    pub undecodable: Vec<Undecodable>,
    /// Messages read that belong to other runs' sagas.
    pub other_sagas: usize,
    /// Each saga's events, in timeline order.
    pub timelines: BTreeMap<String, Vec<SagaEvent>>,
    /// The verdict on every saga.
    pub consistency: Consistency,
    /// Recorded final states that differ from what the order service saw.
    pub disagreements: Vec<Violation>,
    /// The numbers.
    pub summary: Summary,
    /// Each service's tracker counters.
    pub tracker_stats: Vec<(ServiceName, TrackerStats)>,
    /// The spool directory, kept because some event could not be delivered.
    pub kept_spool: Option<PathBuf>,
    /// `--with-tracker`: what the in-process tracker service served.
    pub tracker: Option<TrackerReport>,
    /// `--outbox`: what went through the transactional outbox.
    pub outbox: Option<OutboxReport>,
}

impl RunReport {
    /// True when every saga's timeline is consistent, every message decoded and the recorded outcomes match
    /// what happened.
    pub fn is_consistent(&self) -> bool {
        self.consistency.is_consistent()
            && self.undecodable.is_empty()
            && self.disagreements.is_empty()
    }

    /// The process exit code: 0, or [`EXIT_INCONSISTENT`].
    pub fn exit_code(&self) -> u8 {
        if self.is_consistent() {
            0
        } else {
            EXIT_INCONSISTENT
        }
    }

    /// Every problem found, one per line.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .consistency
            .violations
            .iter()
            .map(ToString::to_string)
            .collect();
        problems.extend(self.undecodable.iter().map(|u| {
            format!(
                "{TRACKER_TOPIC}/{} offset {}: cannot decode: {}",
                u.partition, u.offset, u.error
            )
        }));
        problems.extend(self.disagreements.iter().map(ToString::to_string));
        problems
    }

    /// The report as printed by `order-saga-demo`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.config;
        let failing = self
            .plans
            .iter()
            .filter(|p| {
                matches!(
                    p.fate,
                    orchestrator::Fate::FailAtPayment | orchestrator::Fate::FailAtPaymentAndRelease
                )
            })
            .count();
        let comp_failing = self
            .plans
            .iter()
            .filter(|p| p.fate == orchestrator::Fate::FailAtPaymentAndRelease)
            .count();
        let _ = writeln!(out, "order-saga-demo run {} on {}", self.run_id, self.kafka);
        let _ = writeln!(
            out,
            "  {} saga{}, seed {}: failure rate {:.2} ({failing} fail at payment), compensation failure rate {:.2} ({comp_failing} of those)",
            c.sagas,
            if c.sagas == 1 { "" } else { "s" },
            c.seed,
            c.failure_rate,
            c.compensation_failure_rate
        );
        let hanging: Vec<&str> = self
            .plans
            .iter()
            .filter(|p| p.fate == orchestrator::Fate::HangAfterReserve)
            .map(|p| p.saga_id.as_str())
            .collect();
        if !hanging.is_empty() {
            let _ = writeln!(
                out,
                "  {} saga{} left hanging after {} (--hang-sagas): {}",
                hanging.len(),
                if hanging.len() == 1 { "" } else { "s" },
                saga_tracker::Saga::wire_name(&orchestrator::HANG_AFTER),
                hanging.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "  ran in {:.2} s; read back {} events of this run from {TRACKER_TOPIC}{}",
            self.elapsed.as_secs_f64(),
            self.events.len(),
            if self.duplicates > 0 {
                format!(" ({} duplicate deliveries ignored)", self.duplicates)
            } else {
                String::new()
            }
        );
        if let Some(outbox) = &self.outbox {
            let _ = writeln!(
                out,
                "  outbox: each step's events committed with its business change in PostgreSQL schema {}{}; \
                 the relay published {} of {} outbox rows (failures were recorded outside the rolled-back transactions)",
                outbox.schema,
                if outbox.kept { " (kept)" } else { "" },
                outbox.published,
                outbox.rows
            );
        }
        out.push('\n');
        out.push_str(&summary::render(&self.summary));
        let stuck: Vec<&str> = self
            .consistency
            .states
            .iter()
            .filter(|(_, s)| **s == FinalState::CompensationFailed)
            .map(|(id, _)| id.as_str())
            .collect();
        if !stuck.is_empty() {
            let shown = stuck.iter().take(5).copied().collect::<Vec<_>>().join(", ");
            let more = if stuck.len() > 5 {
                format!(" and {} more", stuck.len() - 5)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "\nNeeds attention (COMPENSATION_FAILED): {shown}{more}"
            );
        }
        out.push('\n');
        match super::timeline::pick_failed_saga(&self.consistency, &self.timelines) {
            Some((saga_id, timeline)) => {
                let state = self.consistency.states.get(saga_id).copied();
                out.push_str(&super::timeline::render(saga_id, state, timeline));
            }
            None => out.push_str("No saga failed in this run: no compensation timeline to show.\n"),
        }
        if let Some(tracker) = &self.tracker {
            out.push('\n');
            out.push_str(&tracker.render());
        }
        out.push('\n');
        let problems = self.problems();
        if problems.is_empty() {
            let _ = writeln!(
                out,
                "Consistency: all {} saga timelines are consistent.",
                self.plans.len()
            );
        } else {
            let _ = writeln!(out, "Consistency: {} problem(s):", problems.len());
            for problem in problems.iter().take(20) {
                let _ = writeln!(out, "  {problem}");
            }
            if problems.len() > 20 {
                let _ = writeln!(out, "  ... and {} more", problems.len() - 20);
            }
        }
        for (service, stats) in &self.tracker_stats {
            if stats.failed > 0 || stats.lost > 0 {
                let _ = writeln!(
                    out,
                    "warning: {service}: {} event deliveries failed ({} spooled, {} lost)",
                    stats.failed, stats.spooled, stats.lost
                );
            }
        }
        if let Some(dir) = &self.kept_spool {
            let _ = writeln!(
                out,
                "Undelivered events are kept in the spool at {}",
                dir.display()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use saga_tracker::Saga as _;

    use super::*;
    use crate::report::consistency;
    use crate::run::order_saga_shape;
    use crate::saga::OrderSaga;

    fn report_of(events: Vec<SagaEvent>) -> RunReport {
        let (timelines, duplicates) = consistency::group_by_saga(&events);
        let consistency = consistency::check_all(
            OrderSaga::NAME,
            &order_saga_shape(),
            ["saga-0001"],
            &timelines,
        );
        let summary = summary::summarize(&events, &consistency, &order_saga_shape());
        RunReport {
            run_id: "test".into(),
            kafka: "nowhere".into(),
            config: DemoConfig::default(),
            plans: Vec::new(),
            runs: Vec::new(),
            elapsed: Duration::ZERO,
            events,
            duplicates,
            undecodable: Vec::new(),
            other_sagas: 0,
            timelines,
            consistency,
            disagreements: Vec::new(),
            summary,
            tracker_stats: Vec::new(),
            kept_spool: None,
            tracker: None,
            outbox: None,
        }
    }

    fn event(step: &str, status: saga_tracker::StepStatus, at: i64) -> SagaEvent {
        let mut e = saga_tracker::testing::sample_event();
        e.step = step.into();
        e.status = status;
        e.recorded_at = at;
        e.idempotency_key = SagaEvent::idempotency_key_for(&e.saga_id, step, status, 1);
        e
    }

    #[test]
    fn an_inconsistent_timeline_makes_the_exit_code_non_zero_and_is_printed() {
        use saga_tracker::StepStatus::*;
        // create_order SUCCEEDED without STARTED.
        let report = report_of(vec![event("create_order", Succeeded, 1)]);
        assert!(!report.is_consistent());
        assert_eq!(report.exit_code(), EXIT_INCONSISTENT);
        let text = report.render();
        assert!(
            text.contains("saga-0001: create_order SUCCEEDED without STARTED"),
            "{text}"
        );

        let steps = [
            "create_order",
            "reserve_stock",
            "charge_payment",
            "confirm_order",
        ];
        let mut events = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            events.push(event(step, Started, 10 * i as i64));
            events.push(event(step, Succeeded, 10 * i as i64 + 5));
        }
        let report = report_of(events);
        assert!(report.is_consistent(), "{:?}", report.problems());
        assert_eq!(report.exit_code(), 0);
        assert!(report.render().contains("No saga failed in this run"));
    }
}
