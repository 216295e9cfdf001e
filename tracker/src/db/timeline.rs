//! The timeline of one saga: its events in order, each failure linked to the compensations it triggered.
//!
//! A compensation event written with schema v2 names its failure (`causeIdempotencyKey`): it is linked to that
//! `FAILED` event whatever the clocks say. Otherwise (v1 events, or a cause not stored) it is linked by time: to the
//! last `FAILED` event recorded at or before it; when there is none (the producers' clocks disagree), to the
//! saga's last `FAILED` event. Every `FAILED` event lists the
//! compensation events linked to it, so the path failure → compensations is explicit in both directions.

use saga_tracker_core::StepStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::EventRow;

/// One event of a timeline (GraphQL: `TimelineEvent`, the event's fields flattened as in JSON).
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject,
)]
#[graphql(name = "TimelineEvent")]
pub struct TimelineEntry {
    /// The stored event.
    #[serde(flatten)]
    #[graphql(flatten)]
    pub event: EventRow,
    /// On a compensation event: the failure that triggered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<Uuid>,
    /// On a `FAILED` event: the compensation events it triggered, in timeline order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggered_compensations: Vec<Uuid>,
}

/// Orders the events (time, then status order, then id) and links failures to compensations.
pub fn build(mut events: Vec<EventRow>) -> Vec<TimelineEntry> {
    events.sort_by(|a, b| {
        (a.recorded_at, a.status, a.event_id).cmp(&(b.recorded_at, b.status, b.event_id))
    });
    let mut entries: Vec<TimelineEntry> = events
        .into_iter()
        .map(|event| TimelineEntry {
            event,
            triggered_by: None,
            triggered_compensations: Vec::new(),
        })
        .collect();
    let last_failure = entries
        .iter()
        .rposition(|e| e.event.status == StepStatus::Failed);
    let mut current_failure: Option<usize> = None;
    for i in 0..entries.len() {
        let status = entries[i].event.status;
        if status == StepStatus::Failed {
            current_failure = Some(i);
        } else if status.is_compensation()
            && let Some(f) = entries[i]
                .event
                .cause_idempotency_key
                .as_deref()
                .and_then(|key| {
                    entries.iter().position(|e| {
                        e.event.idempotency_key == key && e.event.status == StepStatus::Failed
                    })
                })
                .or(current_failure)
                .or(last_failure)
        {
            let id = entries[i].event.event_id;
            entries[i].triggered_by = Some(entries[f].event.event_id);
            entries[f].triggered_compensations.push(id);
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn row(n: u128, step: &str, status: &str, t: i64) -> EventRow {
        let status: StepStatus = status.parse().expect("a status");
        EventRow {
            event_id: Uuid::from_u128(n),
            idempotency_key: format!("s:{step}:{status}:1"),
            saga_id: "s".into(),
            saga_type: "OrderSaga".into(),
            step: step.into(),
            status,
            attempt: 1,
            order_id: None,
            service: "svc".into(),
            recorded_at: DateTime::from_timestamp_micros(t).expect("in range"),
            duration_micros: None,
            error_kind: None,
            error_message: None,
            metadata: serde_json::json!({}),
            kafka_topic: "saga.tracker".into(),
            kafka_partition: 0,
            kafka_offset: n as i64,
            ingested_at: DateTime::from_timestamp_micros(0).expect("in range"),
            step_index: None,
            step_count: None,
            compensable: None,
            cause_idempotency_key: None,
        }
    }

    #[test]
    fn a_v2_cause_links_across_clock_skew() {
        // Two failures; the compensation's clock puts it after the second, but it names the first.
        let mut comp = row(4, "reserve", "COMPENSATION_STARTED", 50);
        comp.cause_idempotency_key = Some("s:charge:FAILED:1".into());
        let t = build(vec![
            row(1, "reserve", "SUCCEEDED", 10),
            row(2, "charge", "FAILED", 20),
            row(3, "ship", "FAILED", 30),
            comp,
        ]);
        assert_eq!(t[3].triggered_by, Some(Uuid::from_u128(2)));
        assert_eq!(t[1].triggered_compensations, vec![Uuid::from_u128(4)]);
        assert!(t[2].triggered_compensations.is_empty());
        // Without the cause (v1), time order links it to the later failure.
        let t = build(vec![
            row(2, "charge", "FAILED", 20),
            row(3, "ship", "FAILED", 30),
            row(4, "reserve", "COMPENSATION_STARTED", 50),
        ]);
        assert_eq!(t[2].triggered_by, Some(Uuid::from_u128(3)));
    }

    #[test]
    fn orders_and_links() {
        let events = vec![
            row(5, "reserve", "COMPENSATED", 50),
            row(1, "reserve", "STARTED", 10),
            row(4, "reserve", "COMPENSATION_STARTED", 40),
            row(3, "charge", "FAILED", 30),
            row(2, "reserve", "SUCCEEDED", 20),
        ];
        let t = build(events);
        let ids: Vec<u128> = t.iter().map(|e| e.event.event_id.as_u128()).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            t[2].triggered_compensations,
            vec![Uuid::from_u128(4), Uuid::from_u128(5)]
        );
        assert_eq!(t[3].triggered_by, Some(Uuid::from_u128(3)));
        assert_eq!(t[0].triggered_by, None);
    }

    #[test]
    fn compensation_before_failure_links_to_last_failure() {
        let t = build(vec![
            row(2, "charge", "FAILED", 30),
            row(1, "reserve", "COMPENSATION_STARTED", 5),
        ]);
        assert_eq!(t[0].triggered_by, Some(Uuid::from_u128(2)));
        assert_eq!(t[1].triggered_compensations, vec![Uuid::from_u128(1)]);
    }
}
