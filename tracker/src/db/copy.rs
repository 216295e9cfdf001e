//! Events appended with `COPY saga_events FROM STDIN (FORMAT binary)`: the way PostgreSQL loads rows fastest (no
//! statement to plan, no array to unnest, rows written to the heap in groups, values read in their binary form).
//! Used for events known not to be stored ([`Store::write`](super::Store::write)); like a plain `INSERT`, it fails
//! with a unique violation, and stores nothing, if one is.

use uuid::Uuid;

use super::store::IncomingEvent;

/// The statement; the columns in the order [`encode`] writes them (`ingested_at` and `restored` take their
/// defaults).
pub(crate) const COPY_EVENTS: &str = "COPY saga_events (event_id, idempotency_key, saga_id, saga_type, step,
     status, attempt, order_id, service, recorded_at, duration_micros, error_kind, error_message, metadata,
     kafka_topic, kafka_partition, kafka_offset, step_index, step_count, compensable, cause_idempotency_key)
     FROM STDIN (FORMAT binary)";

/// Columns per row.
const COLUMNS: i16 = 21;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The binary COPY data of `rows`: the header, one tuple per event, the trailer. `metadata` holds each event's
/// metadata as JSON text, in the order of `rows`; `recorded_at` each event's time in microseconds since the Unix
/// epoch (as stored).
pub(crate) fn encode(rows: &[&IncomingEvent], metadata: &[String], recorded_at: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + rows.len() * 512);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for ((row, meta), at) in rows.iter().zip(metadata).zip(recorded_at) {
        let e = &row.event;
        let mut t = Tuple(&mut out);
        t.0.extend_from_slice(&COLUMNS.to_be_bytes());
        t.uuid(e.event_id);
        t.text(&e.idempotency_key);
        t.text(&e.saga_id);
        t.text(&e.saga_type);
        t.text(&e.step);
        t.text(e.status.as_str());
        t.int4(e.attempt);
        t.opt_text(e.order_id.as_deref());
        t.text(&e.service);
        t.int8(at - PG_EPOCH_MICROS);
        t.opt_int8(e.duration_micros);
        t.opt_text(e.error.as_ref().map(|x| x.kind.as_str()));
        t.opt_text(e.error.as_ref().map(|x| x.message.as_str()));
        t.jsonb(meta);
        t.text(&row.topic);
        t.int4(row.partition);
        t.int8(row.offset);
        t.opt_int4(e.step_index);
        t.opt_int4(e.step_count);
        t.opt_bool(e.compensable);
        t.opt_text(e.cause_idempotency_key.as_deref());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Writes the fields of one tuple: each a 32-bit length (-1 for NULL) and the value in PostgreSQL's binary form.
struct Tuple<'a>(&'a mut Vec<u8>);

impl Tuple<'_> {
    fn field(&mut self, bytes: &[u8]) {
        // every value is far below 2 GiB: a batch is bounded by the Kafka fetch size
        let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
    }

    fn null(&mut self) {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn uuid(&mut self, v: Uuid) {
        self.field(v.as_bytes());
    }

    fn text(&mut self, v: &str) {
        self.field(v.as_bytes());
    }

    fn opt_text(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    fn int4(&mut self, v: i32) {
        self.field(&v.to_be_bytes());
    }

    fn opt_int4(&mut self, v: Option<i32>) {
        match v {
            Some(v) => self.int4(v),
            None => self.null(),
        }
    }

    fn int8(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }

    fn opt_int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int8(v),
            None => self.null(),
        }
    }

    fn opt_bool(&mut self, v: Option<bool>) {
        match v {
            Some(v) => self.field(&[u8::from(v)]),
            None => self.null(),
        }
    }

    /// `jsonb`'s binary form: the format version (1), then the JSON text.
    fn jsonb(&mut self, json: &str) {
        let len = i32::try_from(json.len() + 1).unwrap_or(i32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.push(1);
        self.0.extend_from_slice(json.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tuple_is_a_field_count_and_length_prefixed_values() {
        let mut out = Vec::new();
        let mut t = Tuple(&mut out);
        t.int4(7);
        t.opt_text(None);
        t.jsonb("{}");
        t.opt_bool(Some(true));
        assert_eq!(
            out,
            [
                &[0, 0, 0, 4, 0, 0, 0, 7][..],
                &[0xff, 0xff, 0xff, 0xff],
                &[0, 0, 0, 3, 1, b'{', b'}'],
                &[0, 0, 0, 1, 1],
            ]
            .concat()
        );
    }
}
