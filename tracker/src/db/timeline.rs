//! The timeline of one saga: its events in order, each failure linked to the compensations it triggered.
//!
//! A compensation event written with schema v2 names its failure (`causeIdempotencyKey`): it is linked to that
//! `FAILED` event whatever the clocks say. Otherwise (v1 events, or a cause not stored) it is linked by time: to the
//! last `FAILED` event recorded at or before it; when there is none (the producers' clocks disagree), to the
//! saga's last `FAILED` event. Every `FAILED` event lists the
//! compensation events linked to it, so the path failure → compensations is explicit in both directions.

use chrono::{DateTime, Utc};
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

/// A keyset position in a timeline: the last entry of the previous page (time, status order, event id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineCursor {
    /// `recorded_at` of the last entry.
    pub recorded_at: DateTime<Utc>,
    /// Its status, whose position in [`StepStatus::ALL`] orders entries of the same time.
    pub status: StepStatus,
    /// Its event id.
    pub event_id: Uuid,
}

impl TimelineCursor {
    /// The shape of every cursor [`TimelineCursor::decode`] accepts (the OpenAPI document's `pattern`):
    /// microseconds since the epoch (at most 16 digits before the epoch and 17 after: years 1653 to 5138, inside
    /// the years 0 to 9999 every cursor time is checked against), the status's rank (0–6), the event id in 32 lowercase hex digits, joined by
    /// `_`. Empty is no cursor.
    pub const PATTERN: &'static str = "^((-[0-9]{1,16}|[0-9]{1,17})_[0-6]_[0-9a-f]{32})?$";

    /// The cursor of an entry.
    pub fn of(entry: &TimelineEntry) -> TimelineCursor {
        TimelineCursor {
            recorded_at: entry.event.recorded_at,
            status: entry.event.status,
            event_id: entry.event.event_id,
        }
    }

    /// The rank of a status in the timeline order.
    pub fn rank(status: StepStatus) -> i16 {
        StepStatus::ALL
            .iter()
            .position(|s| *s == status)
            .map_or(6, |p| p as i16)
    }

    /// The opaque text form.
    pub fn encode(&self) -> String {
        format!(
            "{}_{}_{}",
            self.recorded_at.timestamp_micros(),
            Self::rank(self.status),
            self.event_id.simple()
        )
    }

    /// Parses any non-empty text of the shape [`TimelineCursor::PATTERN`].
    pub fn decode(s: &str) -> Option<TimelineCursor> {
        let mut parts = s.splitn(3, '_');
        let (micros, rank, id) = (parts.next()?, parts.next()?, parts.next()?);
        let digits = micros.strip_prefix('-').unwrap_or(micros);
        if digits.is_empty() || digits.len() > 17 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let rank: usize = rank
            .parse()
            .ok()
            .filter(|r: &usize| *r <= 6 && rank.len() == 1)?;
        if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        Some(TimelineCursor {
            recorded_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            status: StepStatus::ALL[rank],
            event_id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// Builds one page of a timeline: `page` are the page's events, `links` every stored `FAILED` and compensation
/// event of the saga (the links of an entry depend only on those and their order, so the page's entries are
/// linked exactly as in the whole timeline). Returns the page's entries in order.
pub fn build_page(page: Vec<EventRow>, links: Vec<EventRow>) -> Vec<TimelineEntry> {
    let key = |e: &EventRow| (e.event_id, e.recorded_at);
    let on_page: std::collections::HashSet<(Uuid, DateTime<Utc>)> = page.iter().map(key).collect();
    let mut events = page;
    events.extend(links.into_iter().filter(|e| !on_page.contains(&key(e))));
    build(events)
        .into_iter()
        .filter(|entry| on_page.contains(&key(&entry.event)))
        .collect()
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
    fn pages_link_like_the_whole_timeline() {
        let mut comp = row(6, "reserve", "COMPENSATION_STARTED", 60);
        comp.cause_idempotency_key = Some("s:charge:FAILED:1".into());
        let events = vec![
            row(1, "reserve", "STARTED", 10),
            row(2, "reserve", "SUCCEEDED", 20),
            row(3, "charge", "FAILED", 30),
            row(4, "ship", "STARTED", 30),
            row(5, "ship", "FAILED", 40),
            comp,
            row(7, "reserve", "COMPENSATED", 70),
            row(8, "x", "UNKNOWN", 70),
        ];
        let whole = build(events.clone());
        let links: Vec<EventRow> = events
            .iter()
            .filter(|e| e.status == StepStatus::Failed || e.status.is_compensation())
            .cloned()
            .collect();
        for size in 1..=whole.len() {
            let mut paged = Vec::new();
            for chunk in whole.chunks(size) {
                let page = chunk.iter().map(|e| e.event.clone()).collect();
                paged.extend(build_page(page, links.clone()));
            }
            assert_eq!(paged, whole, "pages of {size}");
        }
        let c = TimelineCursor::of(&whole[3]);
        assert_eq!(TimelineCursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "1_7_00000000000000000000000000000000",
            "1_0_0000",
            "x_0_00000000000000000000000000000000",
        ] {
            assert_eq!(TimelineCursor::decode(bad), None, "{bad}");
        }
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
