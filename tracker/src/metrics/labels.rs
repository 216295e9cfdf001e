//! Bounded label values: the `saga_type` and `step` labels come from event content, so a producer could create a
//! new time series per event. Only the first [`LabelLimits::max_saga_types`] saga types and the first
//! [`LabelLimits::max_steps`] `(saga type, step)` pairs seen by this process get their own series; later ones
//! are counted under [`OTHER`] and in `saga_tracker_metric_label_values_dropped_total`.

use std::collections::HashSet;

/// The label value that stands for every value over the cap.
pub const OTHER: &str = "other";

/// How many distinct label values the metrics keep (flags `--metrics-max-saga-types`, `--metrics-max-steps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelLimits {
    /// Distinct `saga_type` values; later types are reported as `saga_type="other",step="other"`.
    pub max_saga_types: usize,
    /// Distinct `(saga_type, step)` pairs over all saga types; later steps are reported as `step="other"`.
    pub max_steps: usize,
}

impl LabelLimits {
    /// The defaults of the command line.
    pub const DEFAULT: LabelLimits = LabelLimits {
        max_saga_types: 20,
        max_steps: 40,
    };
}

impl Default for LabelLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which label a value was dropped from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The saga type was over the cap (its step is reported as `other` too).
    SagaType,
    /// The step was over the cap.
    Step,
}

impl Dropped {
    /// The label's name.
    pub const fn label(self) -> &'static str {
        match self {
            Dropped::SagaType => "saga_type",
            Dropped::Step => "step",
        }
    }
}

/// The label values admitted so far.
#[derive(Debug, Default)]
pub struct Admitted {
    limits: LabelLimits,
    saga_types: HashSet<String>,
    steps: HashSet<(String, String)>,
}

impl Admitted {
    /// Nothing admitted yet.
    pub fn new(limits: LabelLimits) -> Self {
        Admitted {
            limits,
            saga_types: HashSet::new(),
            steps: HashSet::new(),
        }
    }

    /// The `(saga_type, step)` label values to report for an event, and which label was capped, if any.
    pub fn admit(&mut self, saga_type: &str, step: &str) -> (String, String, Option<Dropped>) {
        if !self.saga_types.contains(saga_type) {
            if self.saga_types.len() >= self.limits.max_saga_types {
                return (OTHER.into(), OTHER.into(), Some(Dropped::SagaType));
            }
            self.saga_types.insert(saga_type.to_owned());
        }
        let key = (saga_type.to_owned(), step.to_owned());
        if !self.steps.contains(&key) {
            if self.steps.len() >= self.limits.max_steps {
                return (key.0, OTHER.into(), Some(Dropped::Step));
            }
            self.steps.insert(key.clone());
        }
        (key.0, key.1, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_over_the_cap_become_other() {
        let mut a = Admitted::new(LabelLimits {
            max_saga_types: 2,
            max_steps: 3,
        });
        assert_eq!(a.admit("A", "s1"), ("A".into(), "s1".into(), None));
        assert_eq!(a.admit("A", "s2"), ("A".into(), "s2".into(), None));
        assert_eq!(a.admit("B", "s1"), ("B".into(), "s1".into(), None));
        // a fourth pair: the step is capped, the type kept
        assert_eq!(
            a.admit("B", "s2"),
            ("B".into(), OTHER.into(), Some(Dropped::Step))
        );
        // a third type: both capped
        assert_eq!(
            a.admit("C", "s1"),
            (OTHER.into(), OTHER.into(), Some(Dropped::SagaType))
        );
        // admitted values stay admitted
        assert_eq!(a.admit("A", "s2"), ("A".into(), "s2".into(), None));
    }
}
