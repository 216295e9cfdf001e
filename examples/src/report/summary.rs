//! The summary of a run, from its recorded events: sagas by final state, events by status, and per-step
//! duration percentiles.

use std::collections::BTreeMap;

use saga_tracker::{SagaEvent, StepStatus};

use super::consistency::{Consistency, FinalState, StepShape};
use super::table::Table;

/// Duration percentiles of one step's handler (or its compensation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepDurations {
    /// The step's wire name.
    pub step: String,
    /// True for the compensation handler.
    pub compensation: bool,
    /// The service(s) that recorded it.
    pub service: String,
    /// How many terminal events carried a duration.
    pub count: usize,
    /// Median, µs.
    pub p50_micros: i64,
    /// 99th percentile, µs.
    pub p99_micros: i64,
}

/// The numbers of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Sagas per final state (every state, zeros included).
    pub sagas_by_state: Vec<(FinalState, usize)>,
    /// Events per status (the six lifecycle statuses, plus UNKNOWN if any).
    pub events_by_status: Vec<(StepStatus, usize)>,
    /// Per step and compensation that ran.
    pub durations: Vec<StepDurations>,
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Builds the summary from the deduplicated events and the consistency verdict.
pub fn summarize(events: &[SagaEvent], consistency: &Consistency, shape: &[StepShape]) -> Summary {
    let sagas_by_state = FinalState::ALL
        .iter()
        .map(|&s| (s, consistency.count(s)))
        .collect();
    let mut by_status: BTreeMap<StepStatus, usize> = BTreeMap::new();
    for event in events {
        *by_status.entry(event.status).or_default() += 1;
    }
    let events_by_status = StepStatus::ALL
        .iter()
        .filter(|&&s| s != StepStatus::Unknown || by_status.contains_key(&s))
        .map(|&s| (s, by_status.get(&s).copied().unwrap_or(0)))
        .collect();
    let mut durations = Vec::new();
    for compensation in [false, true] {
        for step in shape {
            let mut values = Vec::new();
            let mut services = std::collections::BTreeSet::new();
            for event in events.iter().filter(|e| {
                e.step == step.name
                    && e.status.is_terminal()
                    && e.status.is_compensation() == compensation
            }) {
                services.insert(event.service.as_str());
                if let Some(d) = event.duration_micros {
                    values.push(d);
                }
            }
            if values.is_empty() {
                continue;
            }
            values.sort_unstable();
            durations.push(StepDurations {
                step: step.name.to_owned(),
                compensation,
                service: services.into_iter().collect::<Vec<_>>().join(","),
                count: values.len(),
                p50_micros: percentile(&values, 50.0).unwrap_or(0),
                p99_micros: percentile(&values, 99.0).unwrap_or(0),
            });
        }
    }
    Summary {
        sagas_by_state,
        events_by_status,
        durations,
    }
}

/// Microseconds as milliseconds, e.g. `12.345 ms`.
pub fn ms(micros: i64) -> String {
    format!("{:.3} ms", micros as f64 / 1000.0)
}

/// The summary as text tables.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let mut sagas = Table::new(&["final state", "sagas"]).right(1);
    for (state, n) in &summary.sagas_by_state {
        sagas.row(vec![state.to_string(), n.to_string()]);
    }
    out.push_str("Sagas by final state\n");
    out.push_str(&sagas.render(2));
    let mut statuses = Table::new(&["status", "events"]).right(1);
    for (status, n) in &summary.events_by_status {
        statuses.row(vec![status.to_string(), n.to_string()]);
    }
    out.push_str("\nEvents by status\n");
    out.push_str(&statuses.render(2));
    let mut steps = Table::new(&["step", "handler", "service", "calls", "p50", "p99"])
        .right(3)
        .right(4)
        .right(5);
    for d in &summary.durations {
        steps.row(vec![
            d.step.clone(),
            if d.compensation {
                "compensation"
            } else {
                "step"
            }
            .to_owned(),
            d.service.clone(),
            d.count.to_string(),
            ms(d.p50_micros),
            ms(d.p99_micros),
        ]);
    }
    out.push_str("\nStep durations (recorded durationMicros)\n");
    out.push_str(&steps.render(2));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), Some(50));
        assert_eq!(percentile(&values, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn durations_are_split_between_steps_and_compensations() {
        let mut step = saga_tracker::testing::sample_event();
        step.status = StepStatus::Succeeded;
        step.duration_micros = Some(2_000);
        let mut comp = step.clone();
        comp.status = StepStatus::Compensated;
        comp.duration_micros = Some(5_000);
        let shape = [StepShape {
            name: "reserve_stock",
            compensable: true,
        }];
        let summary = summarize(&[step, comp], &Consistency::default(), &shape);
        assert_eq!(summary.durations.len(), 2);
        assert!(!summary.durations[0].compensation);
        assert_eq!(summary.durations[0].p50_micros, 2_000);
        assert!(summary.durations[1].compensation);
        assert_eq!(summary.durations[1].p99_micros, 5_000);
        let text = render(&summary);
        assert!(text.contains("reserve_stock  compensation"), "{text}");
    }
}
