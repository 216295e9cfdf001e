//! The golden vectors (written by fastavro, vendored in `schemas/vectors/`): our bytes must match. The vendored
//! copy is pinned to the project's `../shared/vectors/` wherever that exists (`shared_vectors_equal_the_vendored_copy`).

use std::collections::BTreeMap;

use saga_tracker_core::codec::{self, DecodeError, fingerprint};
use saga_tracker_core::schema::{self, FINGERPRINT_V1};
use saga_tracker_core::{SagaEvent, StepError, StepStatus};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/vectors/saga_tracker_v1.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).expect("vectors are JSON")
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
        attempt: i32::try_from(v["attempt"].as_i64().expect("attempt")).expect("int"),
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
    }
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn repo_file(relative: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn schema_file_is_byte_for_byte_the_contract() {
    let contract = repo_file("schemas/vectors/SagaTracker.v1.avsc");
    assert_eq!(schema::SCHEMA_JSON.as_bytes(), contract);
    assert_eq!(repo_file("schemas/history/SagaTracker.v1.avsc"), contract);
    assert_eq!(repo_file("schemas/SagaTracker.avsc"), contract);
    assert_eq!(repo_file("core/schemas/SagaTracker.v1.avsc"), contract);
}

/// The contract stays pinned: where the project's `../shared/vectors/` exists (our machines and CI), the
/// repository's vendored copy must equal it byte for byte. A clone with nothing beside it skips this check only.
#[test]
fn shared_vectors_equal_the_vendored_copy() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    if !shared.is_dir() {
        eprintln!("{} is absent: nothing to pin against", shared.display());
        return;
    }
    let mut names: Vec<_> = std::fs::read_dir(&shared)
        .expect("list shared vectors")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "{} is empty", shared.display());
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let theirs = std::fs::read(shared.join(&name)).expect("read shared file");
        let ours = repo_file(&format!("schemas/vectors/{name}"));
        assert!(
            theirs == ours,
            "schemas/vectors/{name} differs from ../shared/vectors/{name}: copy it again (the contract changed)"
        );
    }
}

#[test]
fn canonical_form_and_fingerprint_match_the_spec() {
    let v = vectors();
    assert_eq!(
        schema::canonical_form(),
        v["parsing_canonical_form"].as_str().expect("pcf")
    );
    assert_eq!(schema::computed_fingerprint(), FINGERPRINT_V1);
    assert_eq!(
        hex::encode(FINGERPRINT_V1),
        v["fingerprint_crc64_avro_hex_le"].as_str().expect("fp")
    );
    let fp: u64 = v["fingerprint_u64"]
        .as_str()
        .expect("u64")
        .parse()
        .expect("number");
    assert_eq!(
        fingerprint::crc64_avro(schema::canonical_form().as_bytes()),
        fp
    );
}

#[test]
fn every_valid_vector_encodes_to_its_bytes_and_decodes_back() {
    let v = vectors();
    let valid = v["valid"].as_array().expect("valid[]");
    assert!(valid.len() >= 10, "expected the full vector set");
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
        assert_eq!(
            message,
            hex(&case["single_object_hex"]),
            "single-object bytes of {name}"
        );
        assert_eq!(
            codec::decode(&message).expect(name),
            event,
            "decode of {name}"
        );
        assert_eq!(
            codec::decode_datum(&datum).expect(name),
            event,
            "datum decode of {name}"
        );
        // serde form uses the Avro field names: it reads back the vector's JSON.
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(json, case["event"], "JSON form of {name}");
    }
}

#[test]
fn every_invalid_vector_is_a_typed_error() {
    let v = vectors();
    for case in v["invalid"].as_array().expect("invalid[]") {
        let name = case["name"].as_str().expect("name");
        let bytes = hex(&case["single_object_hex"]);
        let err = codec::decode(&bytes).expect_err(name);
        let expected = match name {
            "empty" => matches!(err, DecodeError::Empty),
            "wrong_magic" | "no_header" => matches!(err, DecodeError::BadMagic { .. }),
            "unknown_fingerprint" => {
                matches!(&err, DecodeError::UnknownFingerprint { fingerprint, .. } if fingerprint == "0000000000000000")
            }
            "truncated_header" => matches!(err, DecodeError::TruncatedHeader { len: 6 }),
            "truncated_body" => matches!(
                err,
                DecodeError::Truncated { .. } | DecodeError::LengthBeyondPayload { .. }
            ),
            "trailing_bytes" => matches!(err, DecodeError::TrailingBytes { count: 2, .. }),
            "string_length_huge" => matches!(
                err,
                DecodeError::LengthBeyondPayload {
                    field: "eventId",
                    ..
                }
            ),
            "string_length_negative" => matches!(err, DecodeError::NegativeLength { len: -5, .. }),
            "enum_index_out_of_range" => {
                matches!(err, DecodeError::EnumIndexOutOfRange { index: 99, .. })
            }
            "union_index_out_of_range" => matches!(
                err,
                DecodeError::UnionIndexOutOfRange {
                    field: "orderId",
                    index: 7,
                    ..
                }
            ),
            "invalid_utf8" => matches!(
                err,
                DecodeError::InvalidUtf8 {
                    field: "eventId",
                    ..
                }
            ),
            "map_block_count_huge" => matches!(
                err,
                DecodeError::LengthBeyondPayload {
                    field: "metadata",
                    ..
                }
            ),
            other => panic!("new invalid vector {other}: add an expectation ({err})"),
        };
        assert!(expected, "{name}: unexpected error {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn unknown_fingerprint_error_names_the_fingerprint() {
    let mut message = codec::encode(&saga_tracker_core::testing::sample_event());
    message[2..10].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let err = codec::decode(&message).expect_err("unknown fingerprint");
    assert!(err.to_string().contains("0102030405060708"), "{err}");
}

#[test]
fn truncating_a_message_anywhere_is_an_error_never_a_panic() {
    let v = vectors();
    for case in v["valid"].as_array().expect("valid[]") {
        let bytes = hex(&case["single_object_hex"]);
        for len in 0..bytes.len() {
            assert!(
                codec::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        // Flipping any single byte must not panic (it may still decode).
        for i in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[i] ^= 0xff;
            let _ = codec::decode(&corrupt);
        }
    }
}

#[test]
fn metadata_is_written_in_ascending_key_order() {
    let mut event = saga_tracker_core::testing::sample_event();
    event.metadata.insert("zeta".into(), "1".into());
    event.metadata.insert("alpha".into(), "2".into());
    event.metadata.insert("Beta".into(), "3".into());
    let bytes = codec::encode(&event);
    let text = String::from_utf8_lossy(&bytes);
    let (b, a, z) = (text.find("Beta"), text.find("alpha"), text.find("zeta"));
    assert!(b < a && a < z, "keys not in byte order: {text}");
}

#[test]
fn confluent_framing_round_trips_and_checks_the_schema_id() {
    let event = saga_tracker_core::testing::sample_event();
    let bytes = codec::encode_framed(&event, codec::Framing::Confluent { schema_id: 42 });
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 42]);
    assert_eq!(codec::decode_confluent(&bytes, 42).expect("decode"), event);
    assert_eq!(codec::decode_any(&bytes, Some(42)).expect("decode"), event);
    assert!(matches!(
        codec::decode_confluent(&bytes, 7),
        Err(DecodeError::UnknownSchemaId {
            found: 42,
            expected: 7
        })
    ));
    assert!(matches!(
        codec::decode_confluent(&bytes[..3], 42),
        Err(DecodeError::TruncatedHeader { len: 3 })
    ));
}

#[test]
fn status_symbols_follow_the_schema_order() {
    let schema: Value = serde_json::from_str(schema::SCHEMA_JSON).expect("json");
    let status = schema["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == "status")
        .expect("status");
    let symbols: Vec<&str> = status["type"]["symbols"]
        .as_array()
        .expect("symbols")
        .iter()
        .map(|s| s.as_str().expect("str"))
        .collect();
    let ours: Vec<&str> = StepStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(symbols, ours);
    assert_eq!(status["type"]["default"], "UNKNOWN");
}
