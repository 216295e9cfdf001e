//! Property-based fuzzing of the tracker's intake (`classify`: decode, validate, bounds): any bytes, and events
//! of any field sizes, are either accepted as storable or rejected with a reason code — never a panic — and what
//! is accepted is within the contract's bounds. Cases: `PROPTEST_CASES` (default 64).

use proptest::prelude::*;
use rdkafka::Timestamp;
use rdkafka::message::OwnedMessage;
use saga_tracker_core::codec::{KnownSchemas, RegistryIds};
use saga_tracker_core::{SagaEvent, StepError, StepStatus, bounds, codec};
use saga_tracker_service::ingest::classify;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn message(payload: Vec<u8>) -> OwnedMessage {
    OwnedMessage::new(
        Some(payload),
        None,
        "saga.tracker".into(),
        Timestamp::NotAvailable,
        0,
        0,
        None,
    )
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..6).prop_map(|c| c.into_iter().collect()),
        (0..=max + 2).prop_map(|n| "x".repeat(n)),
    ]
}

fn event() -> impl Strategy<Value = SagaEvent> {
    (
        (
            text(bounds::SAGA_ID),
            text(bounds::SAGA_TYPE),
            text(bounds::STEP),
            text(bounds::SERVICE),
        ),
        (
            prop::option::of(text(bounds::ORDER_ID)),
            any::<i64>(),
            prop::option::of(text(bounds::ERROR_MESSAGE)),
            prop::collection::btree_map(
                text(bounds::METADATA_KEY),
                text(bounds::METADATA_VALUE),
                0..70,
            ),
        ),
    )
        .prop_map(
            |((saga, ty, step, service), (order, at, message, metadata))| {
                let mut e = saga_tracker_core::testing::sample_event();
                e.idempotency_key =
                    SagaEvent::idempotency_key_for(&saga, &step, StepStatus::Failed, 1);
                e.saga_id = saga;
                e.saga_type = ty;
                e.step = step;
                e.service = service;
                e.order_id = order;
                e.recorded_at = at;
                e.error = message.map(|m| StepError::new("Kind", m));
                e.metadata = metadata;
                e
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_are_stored_or_dead_lettered_with_a_reason(payload in prop::collection::vec(any::<u8>(), 0..256), confluent in any::<bool>()) {
        let mut payload = payload;
        if confluent {
            payload.splice(0..0, [0, 0, 0, 0, 9]);
        }
        let (good, bad) = classify(&[message(payload)], &KnownSchemas::all().with_registry_ids(RegistryIds::current(9)).expect("ids"));
        prop_assert_eq!(good.len() + bad.len(), 1);
        for (_, rejection) in &bad {
            prop_assert!(!rejection.code().is_empty());
        }
    }

    #[test]
    fn events_of_any_size_are_accepted_only_within_bounds(event in event()) {
        let (good, bad) = classify(&[message(codec::encode(&event))], &KnownSchemas::all());
        prop_assert_eq!(good.len() + bad.len(), 1);
        let within = bounds::check(&event).is_ok();
        if let Some(stored) = good.first() {
            prop_assert!(within);
            prop_assert_eq!(&stored.event, &event);
        }
        if let Some((_, rejection)) = bad.first()
            && !within
            && !event.saga_id.is_empty()
            && !event.saga_type.is_empty()
            && !event.step.is_empty()
            && !event.service.is_empty()
        {
            // over a bound and nothing else wrong that is checked first: `too_large` (NUL and time checks come first)
            let code = rejection.code();
            prop_assert!(code == "too_large" || code == "invalid_event", "{}", code);
        }
    }
}
