//! A second opinion: apache-avro (an independent implementation) reads our bytes to the same values, and its
//! serde writer, fed the Rust type, produces our bytes — so the Rust type and the .avsc cannot drift apart.

use apache_avro::types::Value;
use apache_avro::{Schema, from_avro_datum, from_value, to_avro_datum, to_value};
use saga_tracker_core::codec;
use saga_tracker_core::schema::SCHEMA_JSON;
use saga_tracker_core::{SagaEvent, StepError, StepStatus};

fn events() -> Vec<SagaEvent> {
    let mut all = Vec::new();
    let base = saga_tracker_core::testing::sample_event();
    all.push(base.clone());
    for status in StepStatus::ALL {
        let mut e = base.clone();
        e.status = status;
        e.attempt = 3;
        e.order_id = Some("order-42".into());
        e.duration_micros = Some(1532);
        e.error = Some(StepError::new(
            "InsufficientFunds",
            "balance 10.00 < amount 25.50 — ünïcødé",
        ));
        e.metadata
            .insert("traceId".into(), "4bf92f3577b34da6a3ce929d0e0e4736".into());
        e.metadata
            .insert("spanId".into(), "00f067aa0ba902b7".into());
        e.metadata.insert("".into(), "".into());
        all.push(e);
    }
    let mut negative = base;
    negative.recorded_at = -1;
    negative.attempt = i32::MIN;
    negative.duration_micros = Some(i64::MAX);
    all.push(negative);
    all
}

fn schema() -> Schema {
    Schema::parse_str(SCHEMA_JSON).expect("apache-avro parses SagaTracker.avsc")
}

#[test]
fn apache_avro_reads_our_bytes_to_the_same_event() {
    let schema = schema();
    for event in events() {
        let message = codec::encode(&event);
        let datum = codec::single_object_datum(&message).expect("header");
        let value =
            from_avro_datum(&schema, &mut &datum[..], None).expect("apache-avro decodes our datum");
        let Value::Record(fields) = &value else {
            panic!("not a record: {value:?}")
        };
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["eventId", "idempotencyKey", "sagaId"]);
        assert!(
            fields
                .iter()
                .any(|(n, v)| n == "eventId" && *v == Value::Uuid(event.event_id)),
            "{fields:?}"
        );
        assert!(
            fields
                .iter()
                .any(|(n, v)| n == "recordedAt" && *v == Value::TimestampMicros(event.recorded_at)),
            "{fields:?}"
        );
        let back: SagaEvent = from_value(&value).expect("apache-avro value into the Rust type");
        assert_eq!(back, event);
    }
}

#[test]
fn apache_avro_serde_writer_produces_our_bytes() {
    let schema = schema();
    for event in events() {
        let value = to_value(&event)
            .expect("serde to avro value")
            .resolve(&schema)
            .expect("the Rust type resolves against the schema");
        let theirs = to_avro_datum(&schema, value).expect("the Rust type fits the schema");
        let mut ours = Vec::new();
        codec::write_datum(&event, &mut ours);
        // apache-avro keeps maps in a HashMap, so its entry order is arbitrary: bytes are comparable only with at
        // most one metadata entry; otherwise our decoder must read its bytes back to the same event.
        if event.metadata.len() <= 1 {
            assert_eq!(theirs, ours, "{event:?}");
        } else {
            assert_eq!(theirs.len(), ours.len());
        }
        assert_eq!(
            codec::decode_datum(&theirs).expect("we read apache-avro's bytes"),
            event
        );
    }
}
