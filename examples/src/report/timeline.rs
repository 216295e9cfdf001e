//! The timeline of one saga: every recorded event with its time offset, service, step, status, duration, error
//! and trace id.

use std::collections::BTreeMap;

use saga_tracker::{SagaEvent, StepStatus};

use super::consistency::{Consistency, FinalState};
use super::summary::ms;
use super::table::Table;

/// The saga to show: the first that failed and was compensated; else the first whose compensation failed;
/// else the first with a FAILED step.
pub fn pick_failed_saga<'a>(
    consistency: &Consistency,
    timelines: &'a BTreeMap<String, Vec<SagaEvent>>,
) -> Option<(&'a str, &'a [SagaEvent])> {
    let with_state = |wanted: FinalState| {
        consistency
            .states
            .iter()
            .find(|(_, s)| **s == wanted)
            .and_then(|(id, _)| timelines.get_key_value(id))
    };
    with_state(FinalState::Compensated)
        .or_else(|| with_state(FinalState::CompensationFailed))
        .or_else(|| {
            timelines
                .iter()
                .find(|(_, t)| t.iter().any(|e| e.status == StepStatus::Failed))
        })
        .map(|(id, t)| (id.as_str(), t.as_slice()))
}

/// One saga's timeline (events in timeline order) as a table.
pub fn render(saga_id: &str, state: Option<FinalState>, timeline: &[SagaEvent]) -> String {
    let first = timeline.first().map_or(0, |e| e.recorded_at);
    let order_id = timeline
        .iter()
        .find_map(|e| e.order_id.as_deref())
        .unwrap_or("-");
    let mut table = Table::new(&[
        "offset", "service", "step", "status", "duration", "error", "trace id",
    ])
    .right(0)
    .right(4);
    for e in timeline {
        table.row(vec![
            format!("+{}", ms(e.recorded_at - first)),
            e.service.clone(),
            e.step.clone(),
            e.status.to_string(),
            e.duration_micros.map_or_else(|| "-".to_owned(), ms),
            e.error.as_ref().map_or_else(
                || "-".to_owned(),
                |err| format!("{}: {}", err.kind, err.message),
            ),
            e.trace_id().unwrap_or("-").to_owned(),
        ]);
    }
    let state = state.map_or_else(String::new, |s| format!(", final state {s}"));
    format!(
        "Timeline of {saga_id} (order {order_id}{state})\n{}",
        table.render(2)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_offsets_errors_and_trace_ids() {
        let mut started = saga_tracker::testing::sample_event();
        started
            .metadata
            .insert("traceId".into(), "4bf92f3577b34da6a3ce929d0e0e4736".into());
        let mut failed = started.clone();
        failed.status = StepStatus::Failed;
        failed.recorded_at += 1_500;
        failed.duration_micros = Some(1_400);
        failed.error = Some(saga_tracker::StepError::new("StockError", "out of stock"));
        let text = render(
            "saga-0001",
            Some(FinalState::Incomplete),
            &[started, failed],
        );
        assert!(text.contains("+1.500 ms"), "{text}");
        assert!(text.contains("StockError: out of stock"), "{text}");
        assert!(text.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{text}");
        assert!(text.starts_with("Timeline of saga-0001"), "{text}");
    }
}
