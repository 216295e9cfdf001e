//! The tracker's validation (the very source file the service compiles) on whatever the decoder accepts: never
//! panics, and what it accepts is within the contract's bounds and free of what PostgreSQL refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saga_tracker_core::{bounds, codec};

#[allow(dead_code, missing_docs)]
#[path = "../../tracker/src/ingest/validate.rs"]
mod validate;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = codec::decode_any(data, Some(7)) else {
        return;
    };
    if validate::validate(&event).is_ok() {
        assert!(bounds::check(&event).is_ok(), "accepted beyond the bounds");
        assert!(!event.saga_id.is_empty() && !event.step.is_empty());
        assert!(!event.saga_id.contains('\0') && !event.step.contains('\0'));
    }
});
