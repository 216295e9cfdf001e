//! The v2 golden vectors (`schemas/vectors/saga_tracker_v2.json`, written by fastavro through
//! `scripts/gen-vectors-v2`): our v2 bytes match exactly, v1 bytes resolve to the event fastavro's schema
//! resolution reads, and every invalid payload is a typed error.

use std::collections::BTreeMap;

use saga_tracker_core::codec::{self, DecodeError};
use saga_tracker_core::schema::{self, FINGERPRINT_V2};
use saga_tracker_core::{SagaEvent, StepError};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/vectors/saga_tracker_v2.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn int(v: &Value, k: &str) -> Option<i32> {
    v[k].as_i64().map(|n| i32::try_from(n).expect("int"))
}

fn event_from_json(v: &Value) -> SagaEvent {
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} is a string"))
            .to_owned()
    };
    SagaEvent {
        event_id: s("eventId").parse().expect("uuid"),
        idempotency_key: s("idempotencyKey"),
        saga_id: s("sagaId"),
        saga_type: s("sagaType"),
        step: s("step"),
        status: s("status").parse().expect("status"),
        attempt: int(v, "attempt").expect("attempt"),
        order_id: v["orderId"].as_str().map(str::to_owned),
        service: s("service"),
        recorded_at: v["recordedAt"].as_i64().expect("recordedAt"),
        duration_micros: v["durationMicros"].as_i64(),
        error: v["error"].as_object().map(|e| {
            StepError::new(
                e["kind"].as_str().expect("kind"),
                e["message"].as_str().expect("message"),
            )
        }),
        metadata: v["metadata"]
            .as_object()
            .expect("metadata")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_owned()))
            .collect::<BTreeMap<_, _>>(),
        step_index: int(v, "stepIndex"),
        step_count: int(v, "stepCount"),
        compensable: v["compensable"].as_bool(),
        cause_idempotency_key: v["causeIdempotencyKey"].as_str().map(str::to_owned),
    }
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

#[test]
fn v2_canonical_form_and_fingerprint_match_fastavro() {
    let v = vectors();
    assert_eq!(
        schema::canonical_form(),
        v["parsing_canonical_form"].as_str().expect("pcf")
    );
    assert_eq!(schema::computed_fingerprint(), FINGERPRINT_V2);
    assert_eq!(
        hex::encode(FINGERPRINT_V2),
        v["fingerprint_crc64_avro_hex_le"].as_str().expect("fp")
    );
    assert_eq!(
        v["v1_fingerprint_crc64_avro_hex_le"],
        hex::encode(schema::FINGERPRINT_V1)
    );
    assert_eq!(schema::SCHEMA_VERSION, 2);
}

#[test]
fn every_valid_v2_vector_encodes_to_its_bytes_and_decodes_back() {
    let v = vectors();
    let valid = v["valid"].as_array().expect("valid[]");
    assert!(valid.len() >= 8, "expected the full vector set");
    for case in valid {
        let name = case["name"].as_str().expect("name");
        let event = event_from_json(&case["event"]);
        let mut datum = Vec::new();
        codec::write_datum(&event, &mut datum);
        assert_eq!(
            hex::encode(&datum),
            case["datum_hex"].as_str().expect("datum"),
            "datum of {name}"
        );
        let message = codec::encode(&event);
        assert_eq!(message, hex(&case["single_object_hex"]), "bytes of {name}");
        assert_eq!(codec::decode(&message).expect(name), event, "{name}");
        assert_eq!(codec::decode_datum(&datum).expect(name), event, "{name}");
    }
}

#[test]
fn v1_bytes_resolve_to_what_fastavro_resolves() {
    let v = vectors();
    let cases = v["from_v1"].as_array().expect("from_v1[]");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let message = hex(&case["v1_single_object_hex"]);
        let ours = codec::decode(&message).expect(name);
        assert_eq!(ours, event_from_json(&case["read_as_v2"]), "{name}");
        assert_eq!(ours.step_index, None);
    }
}

#[test]
fn every_invalid_v2_vector_is_a_typed_error() {
    let v = vectors();
    for case in v["invalid"].as_array().expect("invalid[]") {
        let name = case["name"].as_str().expect("name");
        let err = codec::decode(&hex(&case["single_object_hex"])).expect_err(name);
        let expected = match name {
            "empty" => matches!(err, DecodeError::Empty),
            "unknown_fingerprint" => matches!(err, DecodeError::UnknownFingerprint { .. }),
            "truncated_header" => matches!(err, DecodeError::TruncatedHeader { len: 6 }),
            "truncated_v2_tail" | "v1_datum_under_v2_fingerprint" => {
                matches!(err, DecodeError::Truncated { .. })
            }
            "trailing_bytes" => matches!(err, DecodeError::TrailingBytes { count: 2, .. }),
            "step_index_union_out_of_range" => matches!(
                err,
                DecodeError::UnionIndexOutOfRange {
                    field: "stepIndex",
                    index: 3,
                    ..
                }
            ),
            "compensable_not_a_boolean" => matches!(
                err,
                DecodeError::InvalidBoolean {
                    field: "compensable",
                    value: 7,
                    ..
                }
            ),
            "step_count_int_overflow" => matches!(
                err,
                DecodeError::IntOutOfRange {
                    field: "stepCount",
                    ..
                }
            ),
            "cause_length_beyond_payload" => matches!(
                err,
                DecodeError::LengthBeyondPayload {
                    field: "causeIdempotencyKey",
                    len: 100,
                    ..
                }
            ),
            other => panic!("new invalid vector {other}: add an expectation ({err})"),
        };
        assert!(expected, "{name}: unexpected error {err:?}");
    }
}

#[test]
fn truncating_or_corrupting_any_v1_or_v2_message_never_panics() {
    let v = vectors();
    let mut messages: Vec<Vec<u8>> = v["valid"]
        .as_array()
        .expect("valid[]")
        .iter()
        .map(|c| hex(&c["single_object_hex"]))
        .collect();
    messages.extend(
        v["from_v1"]
            .as_array()
            .expect("from_v1[]")
            .iter()
            .map(|c| hex(&c["v1_single_object_hex"])),
    );
    for bytes in messages {
        for len in 0..bytes.len() {
            assert!(
                codec::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        for i in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[i] ^= 0xff;
            let _ = codec::decode(&corrupt);
        }
    }
}

#[test]
fn confluent_ids_pick_the_writer_version() {
    let v = vectors();
    let v1_message = hex(&v["from_v1"][0]["v1_single_object_hex"]);
    let v2_message = hex(&v["valid"][1]["single_object_hex"]);
    let ids: codec::RegistryIds = "7=1,12=2".parse().expect("ids");
    let frame = |id: u32, message: &[u8]| {
        let mut out = vec![0];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&message[10..]);
        out
    };
    let from_v1 = codec::decode_any_with(&frame(7, &v1_message), &ids).expect("v1 by id");
    assert_eq!(from_v1, codec::decode(&v1_message).expect("v1"));
    let from_v2 = codec::decode_any_with(&frame(12, &v2_message), &ids).expect("v2 by id");
    assert_eq!(from_v2, codec::decode(&v2_message).expect("v2"));
    let err = codec::decode_any_with(&frame(8, &v2_message), &ids).expect_err("unmapped id");
    assert!(
        matches!(&err, DecodeError::UnknownSchemaId { found: 8, known } if known == "7=v1,12=v2"),
        "{err}"
    );
    // The wrong version for an id is an error, never a silently wrong event.
    assert!(codec::decode_any_with(&frame(12, &v1_message), &ids).is_err());
}
