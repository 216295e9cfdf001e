//! Order-independent derivation of a saga's state from its events.
//!
//! # Why recompute instead of merging
//!
//! Events of one saga come from several services, through retries, spools and (later) an outbox, so they arrive
//! in any order: another service's `SUCCEEDED` may be stored before this service's `STARTED`. Instead of a state
//! machine that applies events in arrival order, the tracker derives the state from the *set* of a saga's events:
//! for every saga a batch touches, the batch's transaction takes a per-saga advisory lock, reloads the saga's
//! events from `saga_events` and writes the result of [`derive`] to `sagas`. [`derive`] sorts its input first and
//! only uses order-insensitive facts (maxima, presence), so any permutation of the same events gives the same
//! row; a duplicate event is absorbed by the primary key before it can count twice. The cost is one indexed read
//! of the saga's events per batch, small because a saga has tens of events, and it needs no merge algebra to get
//! right when a new status symbol (the schema's `UNKNOWN`) appears.
//!
//! # The rules
//!
//! Per step, the *forward* outcome is taken at the highest attempt with a `STARTED`/`SUCCEEDED`/`FAILED` event
//! (`FAILED` wins over `SUCCEEDED` at the same attempt, either wins over `STARTED`); the *compensation* outcome at
//! the highest attempt with a compensation event (`COMPENSATION_FAILED` over `COMPENSATED` over
//! `COMPENSATION_STARTED`). Then the saga is, first rule that matches:
//!
//! 1. `COMPENSATION_FAILED` if a step's compensation outcome is failed;
//! 2. `COMPENSATING` if a compensation is in flight (those steps are the *pending compensations*);
//! 3. `COMPENSATED` if a compensation finished;
//! 4. `FAILED` if a step's forward outcome is failed (a later successful retry clears it);
//! 5. `RUNNING` if a step is in flight (or only `UNKNOWN` statuses were seen);
//! 6. `SUCCEEDED` otherwise.
//!
//! The event model has no "saga finished" marker, so `SUCCEEDED` means "every step recorded so far succeeded":
//! a saga between two steps reads `SUCCEEDED` until the next step's first event arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use saga_tracker_core::StepStatus;
use uuid::Uuid;

use super::model::SagaState;

/// The facts of one event the derivation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts {
    /// The event id (tie-breaker).
    pub event_id: Uuid,
    /// The saga type.
    pub saga_type: String,
    /// The step.
    pub step: String,
    /// The status.
    pub status: StepStatus,
    /// The attempt.
    pub attempt: i32,
    /// The order id.
    pub order_id: Option<String>,
    /// The recording service.
    pub service: String,
    /// When it happened.
    pub recorded_at: DateTime<Utc>,
}

/// What [`derive`] computes for one saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedSaga {
    /// The saga type (of the earliest event).
    pub saga_type: String,
    /// The state.
    pub status: SagaState,
    /// The first order id seen, in event order.
    pub order_id: Option<String>,
    /// The earliest event time.
    pub started_at: DateTime<Utc>,
    /// The latest event time.
    pub updated_at: DateTime<Utc>,
    /// The step whose failure is earliest, if a step's forward outcome is failed.
    pub failed_step: Option<String>,
    /// Steps whose compensation is in flight, sorted.
    pub pending_compensations: Vec<String>,
    /// Every step, sorted.
    pub steps: Vec<String>,
    /// Every service, sorted.
    pub services: Vec<String>,
    /// How many events.
    pub event_count: usize,
}

/// Parses a stored status symbol; anything unknown is [`StepStatus::Unknown`].
pub fn parse_status(s: &str) -> StepStatus {
    StepStatus::from_str(s).unwrap_or(StepStatus::Unknown)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Forward {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Compensation {
    InFlight,
    Done,
    Failed,
}

#[derive(Default)]
struct StepFacts {
    /// (attempt, outcome, time of the outcome's earliest event)
    forward: Option<(i32, Forward, DateTime<Utc>)>,
    compensation: Option<(i32, Compensation)>,
}

/// Derives the saga row from its events, whatever their order. `None` for no events.
pub fn derive(events: &[EventFacts]) -> Option<DerivedSaga> {
    let mut sorted: Vec<&EventFacts> = events.iter().collect();
    sorted.sort_by_key(|e| (e.recorded_at, e.event_id));
    let first = *sorted.first()?;
    let last = *sorted.last()?;

    let mut steps: BTreeMap<&str, StepFacts> = BTreeMap::new();
    let mut services = BTreeSet::new();
    for e in &sorted {
        services.insert(e.service.as_str());
        let facts = steps.entry(e.step.as_str()).or_default();
        let forward = match e.status {
            StepStatus::Started => Some(Forward::Running),
            StepStatus::Succeeded => Some(Forward::Succeeded),
            StepStatus::Failed => Some(Forward::Failed),
            _ => None,
        };
        if let Some(outcome) = forward {
            // Events are sorted by time: on a tie of (attempt, outcome) the earliest time is kept.
            facts.forward = Some(match facts.forward {
                Some(cur) if (cur.0, cur.1) >= (e.attempt, outcome) => cur,
                _ => (e.attempt, outcome, e.recorded_at),
            });
        }
        let compensation = match e.status {
            StepStatus::CompensationStarted => Some(Compensation::InFlight),
            StepStatus::Compensated => Some(Compensation::Done),
            StepStatus::CompensationFailed => Some(Compensation::Failed),
            _ => None,
        };
        if let Some(outcome) = compensation {
            facts.compensation = Some(match facts.compensation {
                Some(cur) if cur >= (e.attempt, outcome) => cur,
                _ => (e.attempt, outcome),
            });
        }
    }

    let comp = |want: Compensation| {
        steps
            .values()
            .any(|f| matches!(f.compensation, Some((_, c)) if c == want))
    };
    let fwd = |want: Forward| {
        steps
            .values()
            .any(|f| matches!(f.forward, Some((_, o, _)) if o == want))
    };
    let status = if comp(Compensation::Failed) {
        SagaState::CompensationFailed
    } else if comp(Compensation::InFlight) {
        SagaState::Compensating
    } else if comp(Compensation::Done) {
        SagaState::Compensated
    } else if fwd(Forward::Failed) {
        SagaState::Failed
    } else if fwd(Forward::Running) || !fwd(Forward::Succeeded) {
        SagaState::Running
    } else {
        SagaState::Succeeded
    };

    let failed_step = steps
        .iter()
        .filter_map(|(step, f)| match f.forward {
            Some((_, Forward::Failed, at)) => Some((at, *step)),
            _ => None,
        })
        .min()
        .map(|(_, step)| step.to_owned());
    let pending_compensations = steps
        .iter()
        .filter(|(_, f)| matches!(f.compensation, Some((_, Compensation::InFlight))))
        .map(|(step, _)| (*step).to_owned())
        .collect();

    Some(DerivedSaga {
        saga_type: first.saga_type.clone(),
        status,
        order_id: sorted.iter().find_map(|e| e.order_id.clone()),
        started_at: first.recorded_at,
        updated_at: last.recorded_at,
        failed_step,
        pending_compensations,
        steps: steps.keys().map(|s| (*s).to_owned()).collect(),
        services: services.into_iter().map(str::to_owned).collect(),
        event_count: sorted.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u128, step: &str, status: StepStatus, attempt: i32, t: i64) -> EventFacts {
        EventFacts {
            event_id: Uuid::from_u128(n),
            saga_type: "OrderSaga".into(),
            step: step.into(),
            status,
            attempt,
            order_id: (n == 2).then(|| "order-1".to_owned()),
            service: format!("svc-{}", n % 2),
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_000_000 + t)
                .expect("in range"),
        }
    }

    fn status_of(events: &[EventFacts]) -> SagaState {
        derive(events).expect("non-empty").status
    }

    /// Every permutation (Heap's algorithm) derives the same saga.
    fn assert_order_independent(events: &[EventFacts]) -> DerivedSaga {
        let expected = derive(events).expect("non-empty");
        let mut v = events.to_vec();
        let n = v.len();
        let mut c = vec![0usize; n];
        let mut i = 0;
        let mut count = 1;
        while i < n {
            if c[i] < i {
                if i % 2 == 0 {
                    v.swap(0, i)
                } else {
                    v.swap(c[i], i)
                }
                assert_eq!(derive(&v).as_ref(), Some(&expected), "permutation {v:?}");
                count += 1;
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
        assert!(count > 1 || n < 2);
        expected
    }

    use StepStatus::*;

    #[test]
    fn empty_is_none() {
        assert_eq!(derive(&[]), None);
    }

    #[test]
    fn running_then_succeeded() {
        let started = ev(1, "reserve", Started, 1, 0);
        assert_eq!(
            status_of(std::slice::from_ref(&started)),
            SagaState::Running
        );
        let done = ev(2, "reserve", Succeeded, 1, 10);
        let saga = assert_order_independent(&[started.clone(), done.clone()]);
        assert_eq!(saga.status, SagaState::Succeeded);
        assert_eq!(saga.order_id.as_deref(), Some("order-1"));
        assert_eq!(saga.started_at, started.recorded_at);
        assert_eq!(saga.updated_at, done.recorded_at);
        assert_eq!(saga.services, vec!["svc-0", "svc-1"]);
        // the next step starts: running again
        assert_eq!(
            status_of(&[started, done, ev(3, "charge", Started, 1, 20)]),
            SagaState::Running
        );
    }

    #[test]
    fn failure_compensation_paths() {
        let base = vec![
            ev(1, "reserve", Started, 1, 0),
            ev(2, "reserve", Succeeded, 1, 10),
            ev(3, "charge", Started, 1, 20),
            ev(4, "charge", Failed, 1, 30),
        ];
        let failed = assert_order_independent(&base);
        assert_eq!(failed.status, SagaState::Failed);
        assert_eq!(failed.failed_step.as_deref(), Some("charge"));

        let mut compensating = base.clone();
        compensating.push(ev(5, "reserve", CompensationStarted, 1, 40));
        let saga = assert_order_independent(&compensating);
        assert_eq!(saga.status, SagaState::Compensating);
        assert_eq!(saga.pending_compensations, vec!["reserve"]);

        let mut compensated = compensating.clone();
        compensated.push(ev(6, "reserve", Compensated, 1, 50));
        let saga = assert_order_independent(&compensated);
        assert_eq!(saga.status, SagaState::Compensated);
        assert!(saga.pending_compensations.is_empty());
        assert_eq!(saga.failed_step.as_deref(), Some("charge"));

        let mut comp_failed = compensating;
        comp_failed.push(ev(6, "reserve", CompensationFailed, 1, 50));
        assert_eq!(
            assert_order_independent(&comp_failed).status,
            SagaState::CompensationFailed
        );
    }

    #[test]
    fn successful_retry_clears_the_failure() {
        let events = vec![
            ev(1, "charge", Started, 1, 0),
            ev(2, "charge", Failed, 1, 10),
            ev(3, "charge", Started, 2, 20),
        ];
        assert_eq!(assert_order_independent(&events).status, SagaState::Running);
        let mut events = events;
        events.push(ev(4, "charge", Succeeded, 2, 30));
        let saga = assert_order_independent(&events);
        assert_eq!(saga.status, SagaState::Succeeded);
        assert_eq!(saga.failed_step, None);
    }

    #[test]
    fn succeeded_before_started_is_succeeded() {
        let events = [
            ev(2, "ship", Succeeded, 1, 10),
            ev(1, "ship", Started, 1, 0),
        ];
        assert_eq!(status_of(&events), SagaState::Succeeded);
    }

    #[test]
    fn unknown_only_is_running() {
        assert_eq!(status_of(&[ev(1, "x", Unknown, 1, 0)]), SagaState::Running);
        assert_eq!(parse_status("NOT_A_STATUS"), Unknown);
        assert_eq!(parse_status("COMPENSATED"), Compensated);
    }
}
