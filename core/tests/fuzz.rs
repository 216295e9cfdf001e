//! Property-based fuzzing (proptest; cargo-fuzz needs a nightly toolchain): the decoder never panics on any
//! bytes, in either framing, starting from the golden vectors and from noise; every structurally valid event
//! with random field sizes round-trips; the bounds check agrees with the field lengths.
//!
//! Cases per property: `PROPTEST_CASES` (default 64, the CI smoke run). A long run:
//! `PROPTEST_CASES=200000 cargo nextest run -p saga-tracker-core --test fuzz --release`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use saga_tracker_core::bounds::{self, Field};
use saga_tracker_core::codec::{self, Framing};
use saga_tracker_core::{SagaEvent, StepError, StepStatus};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The golden vectors' messages (valid and invalid), the seed corpus.
fn seeds() -> Vec<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/vectors/saga_tracker_v1.json"
    );
    let text = std::fs::read_to_string(path).expect("golden vectors");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    ["valid", "invalid"]
        .iter()
        .flat_map(|k| doc[*k].as_array().cloned().unwrap_or_default())
        .filter_map(|v| {
            v["single_object_hex"]
                .as_str()
                .and_then(|h| hex::decode(h).ok())
        })
        .collect()
}

/// A seed with random edits: byte overwrites, a cut, an insertion.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    assert!(seeds.len() >= 10, "seed corpus");
    (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        any::<Option<prop::sample::Index>>(),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(move |(i, overwrites, cut, insert)| {
            let mut m = seeds[i].clone();
            for (at, b) in overwrites {
                if !m.is_empty() {
                    let at = at.index(m.len());
                    m[at] = b;
                }
            }
            if let Some(cut) = cut
                && !m.is_empty()
            {
                m.truncate(cut.index(m.len()));
            }
            let at = m.len() / 2;
            m.splice(at..at, insert);
            m
        })
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..8).prop_map(|c| c.into_iter().collect()),
        (0..=max + 2).prop_map(|n| "x".repeat(n)),
        (0..=max / 2 + 2).prop_map(|n| "é".repeat(n)),
    ]
}

fn event() -> impl Strategy<Value = SagaEvent> {
    (
        (
            any::<u128>(),
            text(bounds::IDEMPOTENCY_KEY),
            text(bounds::SAGA_ID),
            text(bounds::SAGA_TYPE),
            text(bounds::STEP),
            0..StepStatus::ALL.len(),
            any::<i32>(),
        ),
        (
            prop::option::of(text(bounds::ORDER_ID)),
            text(bounds::SERVICE),
            any::<i64>(),
            any::<Option<i64>>(),
            prop::option::of((text(bounds::ERROR_KIND), text(bounds::ERROR_MESSAGE))),
            prop::collection::btree_map(
                text(bounds::METADATA_KEY),
                text(bounds::METADATA_VALUE),
                0..80,
            ),
        ),
    )
        .prop_map(
            |(
                (id, key, saga, ty, step, status, attempt),
                (order, service, at, dur, error, metadata),
            )| {
                SagaEvent {
                    event_id: uuid::Uuid::from_u128(id),
                    idempotency_key: key,
                    saga_id: saga,
                    saga_type: ty,
                    step,
                    status: StepStatus::ALL[status],
                    attempt,
                    order_id: order,
                    service,
                    recorded_at: at,
                    duration_micros: dur,
                    error: error.map(|(k, m)| StepError::new(k, m)),
                    metadata,
                    // v2 fields, present or absent by the id's low bits
                    step_index: (id & 1 == 1).then_some((id >> 8) as i32),
                    step_count: (id & 2 == 2).then_some((id >> 40) as i32),
                    compensable: (id & 4 == 4).then_some(id & 8 == 8),
                    cause_idempotency_key: None,
                }
            },
        )
}

fn within_bounds(e: &SagaEvent) -> bool {
    let md: &BTreeMap<String, String> = &e.metadata;
    let total: usize = md.iter().map(|(k, v)| k.len() + v.len()).sum();
    e.idempotency_key.len() <= bounds::IDEMPOTENCY_KEY
        && e.saga_id.len() <= bounds::SAGA_ID
        && e.saga_type.len() <= bounds::SAGA_TYPE
        && e.step.len() <= bounds::STEP
        && e.service.len() <= bounds::SERVICE
        && e.order_id
            .as_ref()
            .is_none_or(|o| o.len() <= bounds::ORDER_ID)
        && e.error.as_ref().is_none_or(|x| {
            x.kind.len() <= bounds::ERROR_KIND && x.message.len() <= bounds::ERROR_MESSAGE
        })
        && md.len() <= bounds::METADATA_ENTRIES
        && md
            .iter()
            .all(|(k, v)| k.len() <= bounds::METADATA_KEY && v.len() <= bounds::METADATA_VALUE)
        && total <= bounds::METADATA_TOTAL
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_vectors_decode_or_fail_cleanly(message in mutated()) {
        let _ = codec::decode(&message);
        let _ = codec::decode_either_framing(&message);
        // the same datum behind Confluent framing
        let datum = message.get(10..).unwrap_or_default();
        let mut confluent = vec![0, 0, 0, 0, 7];
        confluent.extend_from_slice(datum);
        let _ = codec::decode_confluent(&confluent, 7);
        let _ = codec::decode_any(&confluent, Some(7));
    }

    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(mut message in prop::collection::vec(any::<u8>(), 0..512), framing in 0..3u8) {
        let header: Vec<u8> = match framing {
            0 => [0xC3, 0x01].into_iter().chain(saga_tracker_core::schema::FINGERPRINT_V1).collect(),
            1 => vec![0, 0, 0, 0, 7],
            _ => Vec::new(),
        };
        message.splice(0..0, header);
        let _ = codec::decode(&message);
        let _ = codec::decode_confluent(&message, 7);
        let _ = codec::decode_any(&message, Some(7));
        let _ = codec::decode_either_framing(&message);
    }

    #[test]
    fn valid_events_of_any_size_round_trip_and_bounds_agree(event in event(), schema_id in any::<u32>()) {
        let back = codec::decode(&codec::encode(&event)).expect("decodes");
        prop_assert_eq!(&back, &event);
        let framed = codec::encode_framed(&event, Framing::Confluent { schema_id });
        prop_assert_eq!(codec::decode_confluent(&framed, schema_id).expect("decodes"), event.clone());
        let check = bounds::check(&event);
        prop_assert_eq!(check.is_ok(), within_bounds(&event), "{:?}", check);
        if let Err(e) = check {
            prop_assert!(e.len > e.field.max());
            prop_assert!(Field::ALL.contains(&e.field));
        }
    }
}
