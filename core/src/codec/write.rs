//! The Avro binary writer for [`SagaEvent`]: direct field-by-field encoding, no intermediate `Value`.

use crate::event::{SagaEvent, StepError, StepStatus};

/// Appends a zig-zag varint `long`.
#[inline]
pub(crate) fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends an Avro `string`: its length as a `long`, then the UTF-8 bytes.
#[inline]
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// The borrowed fields of one event, in schema order. [`SagaEvent`] and the recording path (which holds no
/// `SagaEvent`) both encode through this, so there is exactly one encoder. Field meanings are [`SagaEvent`]'s.
#[allow(missing_docs)]
pub struct EventFields<'a, M> {
    pub event_id: &'a uuid::Uuid,
    pub idempotency_key: IdempotencyKey<'a>,
    pub saga_id: &'a str,
    pub saga_type: &'a str,
    pub step: &'a str,
    pub status: StepStatus,
    pub attempt: i32,
    pub order_id: Option<&'a str>,
    pub service: &'a str,
    pub recorded_at: i64,
    pub duration_micros: Option<i64>,
    pub error: Option<&'a StepError>,
    /// Metadata entries, already in ascending key order.
    pub metadata: M,
    /// How many entries `metadata` yields.
    pub metadata_len: usize,
}

/// The idempotency key: either given, or derived as `{sagaId}:{step}:{status}:{attempt}` while writing.
#[derive(Debug, Clone, Copy)]
pub enum IdempotencyKey<'a> {
    /// Written as given.
    Given(&'a str),
    /// Derived from the other fields while writing (no intermediate `String`).
    Derived,
}

/// Appends the Avro datum of `f` (no framing header).
pub fn write_fields<'a, M>(out: &mut Vec<u8>, f: EventFields<'a, M>)
where
    M: Iterator<Item = (&'a str, &'a str)>,
{
    let mut uuid_buf = uuid::Uuid::encode_buffer();
    put_str(out, f.event_id.hyphenated().encode_lower(&mut uuid_buf));
    match f.idempotency_key {
        IdempotencyKey::Given(key) => put_str(out, key),
        IdempotencyKey::Derived => {
            let mut attempt = itoa::Buffer::new();
            let attempt = attempt.format(f.attempt);
            let status = f.status.as_str();
            let len = f.saga_id.len() + f.step.len() + status.len() + attempt.len() + 3;
            put_long(out, len as i64);
            for part in [f.saga_id, ":", f.step, ":", status, ":", attempt] {
                out.extend_from_slice(part.as_bytes());
            }
        }
    }
    put_str(out, f.saga_id);
    put_str(out, f.saga_type);
    put_str(out, f.step);
    put_long(out, i64::from(f.status.index()));
    put_long(out, i64::from(f.attempt));
    match f.order_id {
        None => out.push(0),
        Some(id) => {
            out.push(2);
            put_str(out, id);
        }
    }
    put_str(out, f.service);
    put_long(out, f.recorded_at);
    match f.duration_micros {
        None => out.push(0),
        Some(d) => {
            out.push(2);
            put_long(out, d);
        }
    }
    match f.error {
        None => out.push(0),
        Some(e) => {
            out.push(2);
            put_str(out, &e.kind);
            put_str(out, &e.message);
        }
    }
    if f.metadata_len > 0 {
        put_long(out, f.metadata_len as i64);
        for (k, v) in f.metadata {
            put_str(out, k);
            put_str(out, v);
        }
    }
    out.push(0);
}

/// Appends the Avro binary datum of `event` (no header).
pub fn write_datum(event: &SagaEvent, out: &mut Vec<u8>) {
    write_fields(
        out,
        EventFields {
            event_id: &event.event_id,
            idempotency_key: IdempotencyKey::Given(&event.idempotency_key),
            saga_id: &event.saga_id,
            saga_type: &event.saga_type,
            step: &event.step,
            status: event.status,
            attempt: event.attempt,
            order_id: event.order_id.as_deref(),
            service: &event.service,
            recorded_at: event.recorded_at,
            duration_micros: event.duration_micros,
            error: event.error.as_ref(),
            metadata: event.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            metadata_len: event.metadata.len(),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_varints_follow_the_spec() {
        let cases: [(i64, &[u8]); 6] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_long(&mut out, value);
            assert_eq!(out, bytes, "{value}");
        }
    }
}
