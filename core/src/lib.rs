//! # saga-tracker-core
//!
//! The wire contract of saga-tracker without any transport: the event model ([`SagaEvent`], [`StepStatus`],
//! [`StepError`]), the Avro [`codec`] (single-object encoding and Confluent framing, byte-exact with the golden
//! vectors of an independent implementation) and the [`schema`] text with its fingerprint.
//!
//! Services depend on `saga-tracker`, which re-exports this crate at the same paths (`saga_tracker::codec`,
//! `saga_tracker::SagaEvent`, …). Tools that only read events — the `saga-tracker` CLI, the tracker service —
//! depend on this crate alone (no rdkafka, no OpenTelemetry).
//!
//! ```
//! use saga_tracker_core::{SagaEvent, StepStatus, codec};
//! # let event = saga_tracker_core::testing::sample_event();
//! let bytes = codec::encode(&event);
//! let back: SagaEvent = codec::decode(&bytes)?;
//! assert_eq!(back.status, StepStatus::Started);
//! # Ok::<(), codec::DecodeError>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bounds;
pub mod codec;
pub mod event;
pub mod schema;

#[doc(hidden)]
pub mod testing;

pub use event::{SagaEvent, StepError, StepStatus};
