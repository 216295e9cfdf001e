//! OpenTelemetry glue: the current span's trace and span id, for `metadata` and the `traceparent` header.
//!
//! The ids come from [`opentelemetry::Context::current`]. With `tracing` and `tracing-opentelemetry`, turn on
//! context activation on the layer so entering a `tracing` span makes its OpenTelemetry context current.

use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt;

pub use saga_tracker_core::event::{SPAN_ID_KEY, TRACE_ID_KEY};

/// The ids of a valid OpenTelemetry span context, captured where a step is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    /// The 16-byte trace id.
    pub trace_id: [u8; 16],
    /// The 8-byte span id.
    pub span_id: [u8; 8],
    /// W3C trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceIds {
    /// The ids of the current OpenTelemetry context, if its span context is valid.
    #[inline]
    pub fn current() -> Option<TraceIds> {
        Context::map_current(|cx| {
            if !cx.has_active_span() {
                return None;
            }
            let span = cx.span();
            let sc = span.span_context();
            sc.is_valid().then(|| TraceIds {
                trace_id: sc.trace_id().to_bytes(),
                span_id: sc.span_id().to_bytes(),
                flags: sc.trace_flags().to_u8(),
            })
        })
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex::encode(self.span_id)
    }

    /// The W3C `traceparent` header value: `00-{trace}-{span}-{flags}`.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            self.flags
        )
    }
}
