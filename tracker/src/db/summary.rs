//! The bounded per-saga summary the ingest path derives a saga's state from (issue 20).
//!
//! [`state::derive`](super::state::derive) defines a saga's state from the *set* of its events. Recomputing it from
//! all of a saga's events on every batch makes a batch cost grow with the saga's length. A [`Summary`] holds just
//! the facts `derive` uses, each an order-insensitive fold (minimum, maximum, union):
//!
//! | fact | fold |
//! |---|---|
//! | first event `(recorded_at, event_id)` and its saga type | minimum |
//! | latest `recorded_at`, event count | maximum, sum |
//! | first event with an order id `(recorded_at, event_id)` and the id | minimum |
//! | declared step count (v2) | maximum |
//! | services | union |
//! | per step: forward `(attempt, outcome)` and the earliest time of that pair, compensation `(attempt, outcome)`, compensable | maximum / minimum, maximum, or |
//! | per declared position (v2 `stepIndex`): the step of its earliest event | minimum |
//!
//! so merging the summary of the stored events with the summary of a batch's new events gives the summary of the
//! union, whatever the order and split of the events, and [`Summary::derive`] gives exactly what `derive` gives
//! for the union (tested against it with random event sets, splits and orders, and through the database in
//! `tests/incremental_state.rs`). Its size grows with the saga's distinct steps, services and positions, not its
//! events; `--max-events-per-saga` bounds those too.
//!
//! It is stored as JSON in `saga_summaries` (migration 0007; a `json` column since 0008, read and written whole as
//! text), one row per saga next to its `sagas` row; times are
//! microseconds since the epoch. The migration builds the summaries of existing sagas from their events in SQL.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use saga_tracker_core::StepStatus;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::SagaState;
use super::state::{DerivedSaga, EventFacts};

/// A step's forward outcome: 1 running, 2 succeeded, 3 failed (ordered as `derive` ranks them).
const RUNNING: u8 = 1;
const SUCCEEDED: u8 = 2;
const FAILED: u8 = 3;
/// A compensation's outcome: 1 in flight, 2 done, 3 failed.
const IN_FLIGHT: u8 = 1;
const DONE: u8 = 2;
const COMP_FAILED: u8 = 3;

/// `(microseconds, event id)`: the position of an event in `derive`'s sort order.
type Key = (i64, Uuid);

/// What one step's events amount to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSummary {
    /// Forward outcome: `(attempt, outcome, earliest microseconds of an event with that attempt and outcome)`.
    #[serde(rename = "f", default)]
    pub forward: Option<(i32, u8, i64)>,
    /// Compensation outcome: `(attempt, outcome)`.
    #[serde(rename = "c", default)]
    pub compensation: Option<(i32, u8)>,
    /// Whether an event declared the step compensable (v2).
    #[serde(rename = "k", default)]
    pub compensable: bool,
}

impl StepSummary {
    /// What one event (at `at` microseconds) says of its step.
    fn of(e: &EventFacts, at: i64) -> StepSummary {
        let mut step = StepSummary {
            compensable: e.compensable == Some(true),
            ..StepSummary::default()
        };
        match e.status {
            StepStatus::Started => step.forward = Some((e.attempt, RUNNING, at)),
            StepStatus::Succeeded => step.forward = Some((e.attempt, SUCCEEDED, at)),
            StepStatus::Failed => step.forward = Some((e.attempt, FAILED, at)),
            StepStatus::CompensationStarted => step.compensation = Some((e.attempt, IN_FLIGHT)),
            StepStatus::Compensated => step.compensation = Some((e.attempt, DONE)),
            StepStatus::CompensationFailed => step.compensation = Some((e.attempt, COMP_FAILED)),
            StepStatus::Unknown => {}
        }
        step
    }

    fn merge(&mut self, other: &StepSummary) {
        self.forward = match (self.forward, other.forward) {
            (Some(a), Some(b)) if (a.0, a.1) == (b.0, b.1) => Some((a.0, a.1, a.2.min(b.2))),
            (Some(a), Some(b)) => Some(if (a.0, a.1) > (b.0, b.1) { a } else { b }),
            (a, b) => a.or(b),
        };
        self.compensation = self.compensation.max(other.compensation);
        self.compensable |= other.compensable;
    }
}

/// The facts of a set of events of one saga that its derived state depends on (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// How many events.
    pub n: i64,
    /// The first event: `(microseconds, event id, saga type)`.
    pub first: (i64, Uuid, String),
    /// The latest event time, microseconds.
    pub last: i64,
    /// The first event carrying an order id: `(microseconds, event id, order id)`.
    #[serde(default)]
    pub order: Option<(i64, Uuid, String)>,
    /// The largest declared step count (v2).
    #[serde(default)]
    pub count: Option<i32>,
    /// Every service.
    pub services: BTreeSet<String>,
    /// Every step.
    pub steps: BTreeMap<String, StepSummary>,
    /// Per declared position (v2 `stepIndex`): `(microseconds, event id, step)` of its first event.
    #[serde(default)]
    pub pos: BTreeMap<i32, (i64, Uuid, String)>,
}

fn key_of(e: &EventFacts) -> Key {
    (e.recorded_at.timestamp_micros(), e.event_id)
}

fn earlier<T: Clone>(a: &mut Option<(i64, Uuid, T)>, b: &(i64, Uuid, T)) {
    if a.as_ref().is_none_or(|a| (b.0, b.1) < (a.0, a.1)) {
        *a = Some(b.clone());
    }
}

impl Summary {
    /// The summary of one event.
    pub fn of(e: &EventFacts) -> Summary {
        let (at, id) = key_of(e);
        Summary {
            n: 1,
            first: (at, id, e.saga_type.clone()),
            last: at,
            order: e.order_id.clone().map(|o| (at, id, o)),
            count: e.step_count,
            services: BTreeSet::from([e.service.clone()]),
            steps: BTreeMap::from([(e.step.clone(), StepSummary::of(e, at))]),
            pos: e
                .step_index
                .map(|i| (i, (at, id, e.step.clone())))
                .into_iter()
                .collect(),
        }
    }

    /// The summary of `events`; `None` for none.
    pub fn of_events<'a>(events: impl IntoIterator<Item = &'a EventFacts>) -> Option<Summary> {
        let mut events = events.into_iter();
        let mut summary = Summary::of(events.next()?);
        for e in events {
            summary.add(e);
        }
        Some(summary)
    }

    /// Adds one event: the same as merging [`Summary::of`] the event, without building that summary (a string
    /// is cloned only where the event changes the summary).
    pub fn add(&mut self, e: &EventFacts) {
        let (at, id) = key_of(e);
        self.n += 1;
        if (at, id) < (self.first.0, self.first.1) {
            self.first = (at, id, e.saga_type.clone());
        }
        self.last = self.last.max(at);
        if let Some(order) = &e.order_id
            && self.order.as_ref().is_none_or(|o| (at, id) < (o.0, o.1))
        {
            self.order = Some((at, id, order.clone()));
        }
        self.count = self.count.max(e.step_count);
        if !self.services.contains(&e.service) {
            self.services.insert(e.service.clone());
        }
        let step = StepSummary::of(e, at);
        match self.steps.get_mut(&e.step) {
            Some(s) => s.merge(&step),
            None => {
                self.steps.insert(e.step.clone(), step);
            }
        }
        if let Some(index) = e.step_index {
            match self.pos.get_mut(&index) {
                Some(p) if (at, id) < (p.0, p.1) => *p = (at, id, e.step.clone()),
                Some(_) => {}
                None => {
                    self.pos.insert(index, (at, id, e.step.clone()));
                }
            }
        }
    }

    /// Makes `self` the summary of the union of both event sets (the sets must not share an event).
    pub fn merge(&mut self, other: &Summary) {
        self.n += other.n;
        if (other.first.0, other.first.1) < (self.first.0, self.first.1) {
            self.first = other.first.clone();
        }
        self.last = self.last.max(other.last);
        if let Some(o) = &other.order {
            earlier(&mut self.order, o);
        }
        self.count = self.count.max(other.count);
        self.services.extend(other.services.iter().cloned());
        for (step, s) in &other.steps {
            self.steps.entry(step.clone()).or_default().merge(s);
        }
        for (index, p) in &other.pos {
            let mut cur = self.pos.get(index).cloned();
            earlier(&mut cur, p);
            if let Some(cur) = cur {
                self.pos.insert(*index, cur);
            }
        }
    }

    /// The derived saga: what [`state::derive`](super::state::derive) gives for the summarised events.
    pub fn derive(&self) -> DerivedSaga {
        let comp = |want: u8| {
            self.steps
                .values()
                .any(|f| matches!(f.compensation, Some((_, c)) if c == want))
        };
        let fwd = |want: u8| {
            self.steps
                .values()
                .any(|f| matches!(f.forward, Some((_, o, _)) if o == want))
        };
        let succeeded = |f: &StepSummary| matches!(f.forward, Some((_, SUCCEEDED, _)));
        let owed: Vec<&str> = self
            .steps
            .iter()
            .filter(|(_, f)| {
                f.compensable && succeeded(f) && !matches!(f.compensation, Some((_, DONE)))
            })
            .map(|(step, _)| step.as_str())
            .collect();
        let v2 = self.count.is_some();
        let status = if comp(COMP_FAILED) {
            SagaState::CompensationFailed
        } else if comp(IN_FLIGHT) {
            SagaState::Compensating
        } else if v2 && fwd(FAILED) {
            if !owed.is_empty() {
                SagaState::Compensating
            } else if comp(DONE) {
                SagaState::Compensated
            } else {
                SagaState::Failed
            }
        } else if comp(DONE) {
            SagaState::Compensated
        } else if fwd(FAILED) {
            SagaState::Failed
        } else if fwd(RUNNING) || !fwd(SUCCEEDED) {
            SagaState::Running
        } else if let Some(count) = self.count {
            let last_step = self.pos.get(&(count - 1)).map(|p| p.2.as_str());
            match last_step.and_then(|s| self.steps.get(s)) {
                Some(f) if succeeded(f) => SagaState::Completed,
                _ => SagaState::Running,
            }
        } else {
            SagaState::Succeeded
        };
        let failed_step = self
            .steps
            .iter()
            .filter_map(|(step, f)| match f.forward {
                Some((_, FAILED, at)) => Some((at, step)),
                _ => None,
            })
            .min()
            .map(|(_, step)| step.clone());
        let mut pending_compensations: Vec<String> = self
            .steps
            .iter()
            .filter(|(_, f)| matches!(f.compensation, Some((_, IN_FLIGHT))))
            .map(|(step, _)| step.clone())
            .collect();
        if status == SagaState::Compensating && v2 {
            pending_compensations.extend(owed.iter().map(|s| (*s).to_owned()));
            pending_compensations.sort();
            pending_compensations.dedup();
        }
        DerivedSaga {
            saga_type: self.first.2.clone(),
            status,
            order_id: self.order.as_ref().map(|o| o.2.clone()),
            started_at: micros(self.first.0),
            updated_at: micros(self.last),
            failed_step,
            pending_compensations,
            steps: self.steps.keys().cloned().collect(),
            services: self.services.iter().cloned().collect(),
            event_count: usize::try_from(self.n).unwrap_or(usize::MAX),
        }
    }
}

fn micros(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::db::state::derive;

    prop_compose! {
        fn event()(n in 0u128..40, step in 0usize..4, status in 0usize..7, attempt in 1i32..3,
                   t in 0i64..20, order in prop::option::weighted(0.2, 0usize..3), svc in 0usize..3,
                   v2 in any::<bool>(), index in 0i32..4, count in 3i32..5, comp in any::<bool>(),
                   ty in 0usize..2) -> EventFacts {
            EventFacts {
                event_id: Uuid::from_u128(n),
                saga_type: ["A", "B"][ty].to_owned(),
                step: ["reserve", "charge", "ship", "notify"][step].to_owned(),
                status: StepStatus::ALL[status],
                attempt,
                order_id: order.map(|o| format!("o{o}")),
                service: format!("svc{svc}"),
                recorded_at: micros(1_700_000_000_000_000 + t),
                step_index: v2.then_some(index),
                step_count: v2.then_some(count),
                compensable: v2.then_some(comp),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Any split of a set of events into merged parts derives what `derive` derives from the whole set.
        #[test]
        fn merged_parts_derive_like_the_whole(
            events in prop::collection::vec(event(), 1..30),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
            seed in any::<u64>(),
        ) {
            // distinct event ids, as the store guarantees
            let mut seen = BTreeSet::new();
            let mut events: Vec<EventFacts> =
                events.into_iter().filter(|e| seen.insert(e.event_id)).collect();
            let expected = derive(&events).expect("not empty");
            // shuffle deterministically, then cut into parts and merge them
            let len = events.len();
            for i in (1..len).rev() {
                let j = (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize;
                events.swap(i, j);
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(len)).collect();
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            cuts.dedup();
            let mut merged: Option<Summary> = None;
            for w in cuts.windows(2) {
                let part = Summary::of_events(&events[w[0]..w[1]]).expect("not empty");
                // through the stored form, as the store keeps it
                let part: Summary =
                    serde_json::from_value(serde_json::to_value(&part).expect("json")).expect("json");
                match &mut merged {
                    Some(m) => m.merge(&part),
                    None => merged = Some(part),
                }
            }
            prop_assert_eq!(merged.expect("one part").derive(), expected);
        }

        /// Adding events one by one gives the same summary as merging their one-event summaries.
        #[test]
        fn adding_an_event_is_merging_its_summary(events in prop::collection::vec(event(), 1..30)) {
            let mut seen = BTreeSet::new();
            let events: Vec<EventFacts> =
                events.into_iter().filter(|e| seen.insert(e.event_id)).collect();
            let mut added = Summary::of(&events[0]);
            let mut merged = Summary::of(&events[0]);
            for e in &events[1..] {
                added.add(e);
                merged.merge(&Summary::of(e));
            }
            prop_assert_eq!(added, merged);
        }
    }
}
