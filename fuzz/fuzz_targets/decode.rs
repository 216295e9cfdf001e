//! The decoder on arbitrary bytes, in both framings: never panics, and every event it returns re-encodes to a
//! message that decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saga_tracker_core::codec::{self, Framing};

/// The Confluent schema id the fuzzer's Confluent-framed inputs (`00` + id 7) stand for.
const SCHEMA_ID: u32 = 7;

fuzz_target!(|data: &[u8]| {
    for decoded in [
        codec::decode_any(data, None),
        codec::decode_any(data, Some(SCHEMA_ID)),
        codec::decode_either_framing(data),
    ] {
        if let Ok(event) = decoded {
            let again = codec::decode(&codec::encode(&event)).expect("re-encoded event decodes");
            assert_eq!(again, event, "single-object round trip");
            let framed = codec::encode_framed(
                &event,
                Framing::Confluent {
                    schema_id: SCHEMA_ID,
                },
            );
            let again = codec::decode_confluent(&framed, SCHEMA_ID).expect("Confluent round trip");
            assert_eq!(again, event, "Confluent round trip");
        }
    }
});
