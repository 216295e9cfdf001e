//! Checks a decoded event can be stored: PostgreSQL rejects NUL in text and timestamps beyond its range, an
//! event without a saga id or type could never be queried, and a value over the contract's bounds
//! ([`saga_tracker_core::bounds`]) could exceed an index row. Such events go to the DLQ instead of blocking the
//! batch forever.

use saga_tracker_core::SagaEvent;
use saga_tracker_core::bounds::{self, TooLarge};

/// 0001-01-01T00:00:00Z in microseconds since the epoch.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
/// 9999-12-31T23:59:59.999999Z in microseconds since the epoch.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Why a decoded event cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    /// A required string is empty.
    #[error("`{0}` is empty")]
    Empty(&'static str),
    /// A string contains U+0000, which PostgreSQL text cannot hold.
    #[error("`{0}` contains a NUL character")]
    Nul(&'static str),
    /// `recordedAt` outside years 1..=9999.
    #[error("`recordedAt` {0} is outside years 1..=9999")]
    RecordedAtOutOfRange(i64),
    /// A value over the contract's bounds.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
}

/// Checks `event`.
pub fn validate(event: &SagaEvent) -> Result<(), InvalidEvent> {
    for (name, value) in [
        ("sagaId", &event.saga_id),
        ("sagaType", &event.saga_type),
        ("step", &event.step),
        ("service", &event.service),
    ] {
        if value.is_empty() {
            return Err(InvalidEvent::Empty(name));
        }
    }
    let mut strings: Vec<(&'static str, &str)> = vec![
        ("idempotencyKey", &event.idempotency_key),
        ("sagaId", &event.saga_id),
        ("sagaType", &event.saga_type),
        ("step", &event.step),
        ("service", &event.service),
    ];
    if let Some(order) = &event.order_id {
        strings.push(("orderId", order));
    }
    if let Some(error) = &event.error {
        strings.push(("error.kind", &error.kind));
        strings.push(("error.message", &error.message));
    }
    if let Some(cause) = &event.cause_idempotency_key {
        strings.push(("causeIdempotencyKey", cause));
    }
    for (k, v) in &event.metadata {
        strings.push(("metadata", k));
        strings.push(("metadata", v));
    }
    if let Some((name, _)) = strings.iter().find(|(_, s)| s.contains('\0')) {
        return Err(InvalidEvent::Nul(name));
    }
    if !(MIN_MICROS..=MAX_MICROS).contains(&event.recorded_at) {
        return Err(InvalidEvent::RecordedAtOutOfRange(event.recorded_at));
    }
    bounds::check(event)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_postgres_cannot_store() {
        let ok = saga_tracker_core::testing::sample_event();
        assert_eq!(validate(&ok), Ok(()));
        let mut e = ok.clone();
        e.saga_id.clear();
        assert_eq!(validate(&e), Err(InvalidEvent::Empty("sagaId")));
        let mut e = ok.clone();
        e.metadata.insert("k".into(), "a\0b".into());
        assert_eq!(validate(&e), Err(InvalidEvent::Nul("metadata")));
        let mut e = ok.clone();
        e.cause_idempotency_key = Some("a\0b".into());
        assert_eq!(validate(&e), Err(InvalidEvent::Nul("causeIdempotencyKey")));
        let mut e = ok.clone();
        e.recorded_at = i64::MAX;
        assert_eq!(
            validate(&e),
            Err(InvalidEvent::RecordedAtOutOfRange(i64::MAX))
        );
        let mut e = ok.clone();
        e.saga_id = "s".repeat(bounds::SAGA_ID + 1);
        assert!(matches!(
            validate(&e),
            Err(InvalidEvent::TooLarge(TooLarge {
                field: bounds::Field::SagaId,
                len: 257
            }))
        ));
        let mut e = ok;
        e.recorded_at = MAX_MICROS;
        assert_eq!(validate(&e), Ok(()));
        assert!(chrono::DateTime::from_timestamp_micros(MIN_MICROS).is_some());
    }
}
