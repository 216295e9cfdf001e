//! Checks each saga's recorded timeline against the saga's shape: every terminal event has its start, steps
//! run in order and only after the previous one succeeded, every compensation follows the failure that
//! triggered it and undoes a step that succeeded, newest first, and every saga reaches an end.

use std::collections::BTreeMap;

use saga_tracker::{SagaEvent, StepStatus};

/// How a saga ended, according to its recorded events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FinalState {
    /// Every step succeeded.
    Completed,
    /// A step failed and every compensation succeeded.
    Compensated,
    /// A step failed and at least one compensation failed.
    CompensationFailed,
    /// The timeline stops before an end (or is inconsistent).
    Incomplete,
}

impl FinalState {
    /// Every state, in report order.
    pub const ALL: [FinalState; 4] = [
        FinalState::Completed,
        FinalState::Compensated,
        FinalState::CompensationFailed,
        FinalState::Incomplete,
    ];

    /// The name shown in the report.
    pub const fn as_str(self) -> &'static str {
        match self {
            FinalState::Completed => "COMPLETED",
            FinalState::Compensated => "COMPENSATED",
            FinalState::CompensationFailed => "COMPENSATION_FAILED",
            FinalState::Incomplete => "INCOMPLETE",
        }
    }
}

impl std::fmt::Display for FinalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of the saga's shape: its wire name and whether it has a compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepShape {
    /// The step's wire name.
    pub name: &'static str,
    /// Whether it is compensable.
    pub compensable: bool,
}

/// One problem in one saga's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The saga.
    pub saga_id: String,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.saga_id, self.problem)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepState {
    NotStarted,
    Running,
    Succeeded,
    Failed,
    Compensating,
    Compensated,
    CompensationFailed,
}

/// Where a status sits in a step's life, to order events recorded in the same microsecond.
fn lifecycle_rank(status: StepStatus) -> u8 {
    match status {
        StepStatus::Started => 0,
        StepStatus::Succeeded | StepStatus::Failed => 1,
        StepStatus::CompensationStarted => 2,
        StepStatus::Compensated | StepStatus::CompensationFailed => 3,
        StepStatus::Unknown => 4,
    }
}

/// Sorts one saga's events into the order they happened: by `recordedAt`, then by lifecycle.
pub fn sort_timeline(events: &mut [SagaEvent]) {
    events.sort_by_key(|e| (e.recorded_at, lifecycle_rank(e.status)));
}

/// Groups events by saga id (each saga's events in timeline order), dropping repeated deliveries of the same
/// transition (same idempotency key). Returns the groups and how many duplicates were dropped.
pub fn group_by_saga(events: &[SagaEvent]) -> (BTreeMap<String, Vec<SagaEvent>>, usize) {
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = 0;
    let mut groups: BTreeMap<String, Vec<SagaEvent>> = BTreeMap::new();
    for event in events {
        if !seen.insert(event.idempotency_key.as_str()) {
            duplicates += 1;
            continue;
        }
        groups
            .entry(event.saga_id.clone())
            .or_default()
            .push(event.clone());
    }
    for timeline in groups.values_mut() {
        sort_timeline(timeline);
    }
    (groups, duplicates)
}

/// How the services recorded their events, which decides what a consistent timeline may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recording {
    /// Every event through the tracker's sink: a terminal event always follows its start.
    #[default]
    Direct,
    /// `--outbox`: a step's start and success commit with its business transaction; a failed step's transaction
    /// rolls back with its STARTED (COMPENSATION_STARTED), so its FAILED (COMPENSATION_FAILED) may stand alone.
    Outbox,
}

/// Checks one saga's timeline (in timeline order). Returns its final state and its problems; a saga with
/// problems is [`FinalState::Incomplete`] unless its events still reach an end.
pub fn check_saga(
    saga_type: &str,
    shape: &[StepShape],
    saga_id: &str,
    timeline: &[SagaEvent],
) -> (FinalState, Vec<Violation>) {
    check_saga_recorded(Recording::Direct, saga_type, shape, saga_id, timeline)
}

/// [`check_saga`] for events recorded the way `recording` says.
pub fn check_saga_recorded(
    recording: Recording,
    saga_type: &str,
    shape: &[StepShape],
    saga_id: &str,
    timeline: &[SagaEvent],
) -> (FinalState, Vec<Violation>) {
    let outbox = recording == Recording::Outbox;
    let mut problems = Vec::new();
    let mut state = vec![StepState::NotStarted; shape.len()];
    let mut failed_at: Option<usize> = None;
    for event in timeline {
        if event.saga_type != saga_type {
            problems.push(format!(
                "event {} is for saga type {}, expected {saga_type}",
                event.event_id, event.saga_type
            ));
            continue;
        }
        let Some(i) = shape.iter().position(|s| s.name == event.step) else {
            problems.push(format!("unknown step `{}` ({})", event.step, event.status));
            continue;
        };
        let step = shape[i].name;
        match event.status {
            StepStatus::Started => {
                if state[i] != StepState::NotStarted {
                    problems.push(format!("{step} STARTED again"));
                } else if let Some(f) = failed_at {
                    problems.push(format!("{step} STARTED after {} FAILED", shape[f].name));
                } else if i > 0 && state[i - 1] != StepState::Succeeded {
                    problems.push(format!(
                        "{step} STARTED before {} SUCCEEDED",
                        shape[i - 1].name
                    ));
                }
                state[i] = StepState::Running;
            }
            StepStatus::Failed
                if outbox
                    && state[i] == StepState::NotStarted
                    && failed_at.is_none()
                    && (i == 0 || state[i - 1] == StepState::Succeeded) =>
            {
                // Its STARTED rolled back with the step's transaction.
                state[i] = StepState::Failed;
                failed_at = Some(i);
            }
            StepStatus::CompensationFailed
                if outbox
                    && state[i] == StepState::Succeeded
                    && failed_at.is_some_and(|f| f > i) =>
            {
                // Its COMPENSATION_STARTED rolled back with the compensation's transaction.
                state[i] = StepState::CompensationFailed;
            }
            StepStatus::Succeeded | StepStatus::Failed => {
                if state[i] != StepState::Running {
                    problems.push(format!("{step} {} without STARTED", event.status));
                }
                if event.status == StepStatus::Succeeded {
                    state[i] = StepState::Succeeded;
                } else {
                    state[i] = StepState::Failed;
                    if let Some(f) = failed_at {
                        problems.push(format!(
                            "{step} FAILED after {} had already FAILED",
                            shape[f].name
                        ));
                    } else {
                        failed_at = Some(i);
                    }
                }
            }
            StepStatus::CompensationStarted => {
                match failed_at {
                    None => problems.push(format!(
                        "{step} COMPENSATION_STARTED without a FAILED step to trigger it"
                    )),
                    Some(f) if f <= i => problems.push(format!(
                        "{step} COMPENSATION_STARTED, but the failure ({} FAILED) is not after it",
                        shape[f].name
                    )),
                    Some(_) => {}
                }
                if !shape[i].compensable {
                    problems.push(format!("{step} is not compensable but was compensated"));
                }
                if state[i] != StepState::Succeeded {
                    problems.push(format!(
                        "{step} COMPENSATION_STARTED but the step had not SUCCEEDED"
                    ));
                }
                if let Some(later) = (i + 1..shape.len()).find(|&j| {
                    shape[j].compensable
                        && matches!(state[j], StepState::Succeeded | StepState::Compensating)
                }) {
                    problems.push(format!(
                        "{step} compensated before {} (compensations run newest first)",
                        shape[later].name
                    ));
                }
                state[i] = StepState::Compensating;
            }
            StepStatus::Compensated | StepStatus::CompensationFailed => {
                if state[i] != StepState::Compensating {
                    problems.push(format!(
                        "{step} {} without COMPENSATION_STARTED",
                        event.status
                    ));
                }
                state[i] = if event.status == StepStatus::Compensated {
                    StepState::Compensated
                } else {
                    StepState::CompensationFailed
                };
            }
            StepStatus::Unknown => problems.push(format!("{step} has an UNKNOWN status")),
        }
    }
    for (i, s) in state.iter().enumerate() {
        match s {
            StepState::Running => {
                problems.push(format!("{} STARTED but never finished", shape[i].name))
            }
            StepState::Compensating => {
                problems.push(format!(
                    "{} COMPENSATION_STARTED but never finished",
                    shape[i].name
                ));
            }
            StepState::Succeeded if failed_at.is_some_and(|f| i < f) && shape[i].compensable => {
                problems.push(format!(
                    "{} SUCCEEDED but was not compensated after {} FAILED",
                    shape[i].name,
                    failed_at.map_or("?", |f| shape[f].name)
                ));
            }
            _ => {}
        }
    }
    let final_state = if timeline.is_empty() {
        problems.push("no events recorded".into());
        FinalState::Incomplete
    } else if !problems.is_empty() {
        FinalState::Incomplete
    } else if failed_at.is_some() {
        if state.contains(&StepState::CompensationFailed) {
            FinalState::CompensationFailed
        } else {
            FinalState::Compensated
        }
    } else if state.last() == Some(&StepState::Succeeded) {
        FinalState::Completed
    } else {
        problems.push(format!(
            "saga stops after {}: it neither completed nor failed",
            state
                .iter()
                .rposition(|s| *s != StepState::NotStarted)
                .map_or("nothing", |i| shape[i].name)
        ));
        FinalState::Incomplete
    };
    let violations = problems
        .into_iter()
        .map(|problem| Violation {
            saga_id: saga_id.to_owned(),
            problem,
        })
        .collect();
    (final_state, violations)
}

/// The verdict on a whole run.
#[derive(Debug, Clone, Default)]
pub struct Consistency {
    /// Each saga's final state.
    pub states: BTreeMap<String, FinalState>,
    /// Every problem found.
    pub violations: Vec<Violation>,
}

impl Consistency {
    /// True when no saga has a problem.
    pub fn is_consistent(&self) -> bool {
        self.violations.is_empty()
    }

    /// How many sagas ended in `state`.
    pub fn count(&self, state: FinalState) -> usize {
        self.states.values().filter(|s| **s == state).count()
    }
}

/// Checks every expected saga (a saga with no events is a problem too).
pub fn check_all<'a>(
    saga_type: &str,
    shape: &[StepShape],
    expected: impl IntoIterator<Item = &'a str>,
    timelines: &BTreeMap<String, Vec<SagaEvent>>,
) -> Consistency {
    check_all_recorded(Recording::Direct, saga_type, shape, expected, timelines)
}

/// [`check_all`] for events recorded the way `recording` says.
pub fn check_all_recorded<'a>(
    recording: Recording,
    saga_type: &str,
    shape: &[StepShape],
    expected: impl IntoIterator<Item = &'a str>,
    timelines: &BTreeMap<String, Vec<SagaEvent>>,
) -> Consistency {
    let mut result = Consistency::default();
    for saga_id in expected {
        let timeline = timelines.get(saga_id).map_or(&[][..], Vec::as_slice);
        let (state, violations) =
            check_saga_recorded(recording, saga_type, shape, saga_id, timeline);
        result.states.insert(saga_id.to_owned(), state);
        result.violations.extend(violations);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: [StepShape; 3] = [
        StepShape {
            name: "reserve_stock",
            compensable: true,
        },
        StepShape {
            name: "charge_payment",
            compensable: true,
        },
        StepShape {
            name: "confirm_order",
            compensable: false,
        },
    ];

    fn ev(step: &str, status: StepStatus, at: i64) -> SagaEvent {
        let mut e = saga_tracker::testing::sample_event();
        e.saga_type = "OrderSaga".into();
        e.step = step.into();
        e.status = status;
        e.recorded_at = at;
        e.idempotency_key = SagaEvent::idempotency_key_for("s", step, status, 1);
        e
    }

    fn check(events: &[SagaEvent]) -> (FinalState, Vec<String>) {
        let (state, v) = check_saga("OrderSaga", &SHAPE, "s", events);
        (state, v.into_iter().map(|v| v.problem).collect())
    }

    use StepStatus::*;

    #[test]
    fn a_completed_saga_is_consistent() {
        let events = [
            ev("reserve_stock", Started, 1),
            ev("reserve_stock", Succeeded, 2),
            ev("charge_payment", Started, 3),
            ev("charge_payment", Succeeded, 4),
            ev("confirm_order", Started, 5),
            ev("confirm_order", Succeeded, 6),
        ];
        assert_eq!(check(&events), (FinalState::Completed, vec![]));
    }

    #[test]
    fn a_compensated_saga_is_consistent_and_a_failed_compensation_is_reported_as_such() {
        let mut events = vec![
            ev("reserve_stock", Started, 1),
            ev("reserve_stock", Succeeded, 2),
            ev("charge_payment", Started, 3),
            ev("charge_payment", Failed, 4),
            ev("reserve_stock", CompensationStarted, 5),
            ev("reserve_stock", Compensated, 6),
        ];
        assert_eq!(check(&events), (FinalState::Compensated, vec![]));
        events[5] = ev("reserve_stock", CompensationFailed, 6);
        assert_eq!(check(&events), (FinalState::CompensationFailed, vec![]));
    }

    #[test]
    fn succeeded_without_started_is_reported() {
        let events = [ev("reserve_stock", Succeeded, 2)];
        let (state, problems) = check(&events);
        assert_eq!(state, FinalState::Incomplete);
        assert!(
            problems
                .iter()
                .any(|p| p == "reserve_stock SUCCEEDED without STARTED"),
            "{problems:?}"
        );
    }

    #[test]
    fn compensation_without_failure_is_reported() {
        let events = [
            ev("reserve_stock", Started, 1),
            ev("reserve_stock", Succeeded, 2),
            ev("reserve_stock", CompensationStarted, 3),
            ev("reserve_stock", Compensated, 4),
        ];
        let (_, problems) = check(&events);
        assert!(
            problems.iter().any(|p| p.contains("without a FAILED step")),
            "{problems:?}"
        );
    }

    #[test]
    fn missing_compensation_and_unfinished_steps_are_reported() {
        let events = [
            ev("reserve_stock", Started, 1),
            ev("reserve_stock", Succeeded, 2),
            ev("charge_payment", Started, 3),
            ev("charge_payment", Failed, 4),
        ];
        let (state, problems) = check(&events);
        assert_eq!(state, FinalState::Incomplete);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("was not compensated after charge_payment FAILED")),
            "{problems:?}"
        );
        let (_, problems) = check(&[ev("reserve_stock", Started, 1)]);
        assert!(
            problems
                .iter()
                .any(|p| p == "reserve_stock STARTED but never finished"),
            "{problems:?}"
        );
    }

    #[test]
    fn out_of_order_steps_are_reported() {
        let events = [
            ev("charge_payment", Started, 1),
            ev("charge_payment", Succeeded, 2),
        ];
        let (_, problems) = check(&events);
        assert!(
            problems
                .iter()
                .any(|p| p == "charge_payment STARTED before reserve_stock SUCCEEDED"),
            "{problems:?}"
        );
    }

    #[test]
    fn same_microsecond_events_sort_by_lifecycle_and_duplicates_are_dropped() {
        let events = vec![
            ev("reserve_stock", Succeeded, 5),
            ev("reserve_stock", Started, 5),
            ev("reserve_stock", Started, 5),
        ];
        let (groups, duplicates) = group_by_saga(&events);
        assert_eq!(duplicates, 1);
        let timeline = &groups["saga-0001"];
        assert_eq!(
            timeline.iter().map(|e| e.status).collect::<Vec<_>>(),
            vec![Started, Succeeded]
        );
    }

    #[test]
    fn an_expected_saga_without_events_is_reported() {
        let result = check_all("OrderSaga", &SHAPE, ["missing"], &BTreeMap::new());
        assert_eq!(result.states["missing"], FinalState::Incomplete);
        assert_eq!(result.violations[0].problem, "no events recorded");
    }

    #[test]
    fn with_the_outbox_a_failure_may_stand_without_its_rolled_back_start() {
        use StepStatus::*;
        // reserve_stock succeeded; charge_payment failed (its STARTED rolled back); the release failed (its
        // COMPENSATION_STARTED rolled back).
        let events = [
            ev("reserve_stock", Started, 1),
            ev("reserve_stock", Succeeded, 2),
            ev("charge_payment", Failed, 3),
            ev("reserve_stock", CompensationFailed, 4),
        ];
        let (state, problems) =
            check_saga_recorded(Recording::Outbox, "OrderSaga", &SHAPE, "s", &events);
        assert_eq!(state, FinalState::CompensationFailed, "{problems:?}");
        assert!(problems.is_empty(), "{problems:?}");
        // Recorded directly, the same timeline lacks its starts.
        let (state, problems) = check(&events);
        assert_eq!(state, FinalState::Incomplete);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("FAILED without STARTED")),
            "{problems:?}"
        );
        // Still in order with the outbox: a step cannot fail before the previous one succeeded.
        let (_, problems) = check_saga_recorded(
            Recording::Outbox,
            "OrderSaga",
            &SHAPE,
            "s",
            &[ev("charge_payment", Failed, 1)],
        );
        assert!(!problems.is_empty());
    }
}
