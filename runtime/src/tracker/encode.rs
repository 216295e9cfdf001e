//! Turns queued commands into framed Avro messages, in buffers the worker reuses from event to event.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use uuid::{NoContext, Timestamp, Uuid};

use super::clock::Anchor;
use super::command::{Pending, StepEvent};
use crate::bounds;
use crate::codec::Framing;
use crate::codec::write::{EventFields, IdempotencyKey, write_fields};
use crate::event::{StepError, StepStatus, system_time_to_micros};
use crate::otel::{SPAN_ID_KEY, TRACE_ID_KEY, TraceIds};
use crate::sink::Envelope;
use crate::transition::Transition;

/// The fields of one event, borrowed from a [`StepRecord`] or a [`Pending`] transition.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    pub saga_type: &'a str,
    pub step: &'a str,
    pub saga_id: &'a str,
    pub status: StepStatus,
    pub attempt: i32,
    pub order_id: Option<&'a str>,
    pub at: SystemTime,
    pub duration: Option<Duration>,
    pub error: Option<&'a StepError>,
    pub metadata: &'a [(Cow<'static, str>, String)],
    pub trace: Option<&'a TraceIds>,
    /// The step's place in the saga declaration (schema v2): from the static descriptor, `None` for a
    /// hand-recorded transition that does not say.
    pub shape: Option<Shape>,
    /// The idempotency key of the failure a compensation answers (schema v2 `causeIdempotencyKey`).
    pub cause: Option<&'a str>,
}

/// Static facts of a declared step (schema v2 `stepIndex`, `stepCount`, `compensable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub step_index: u16,
    pub step_count: u16,
    pub compensable: bool,
}

impl<'a> Parts<'a> {
    /// The event of a step call; stamps converted to wall-clock time by `anchor`.
    pub(crate) fn of_event(event: &'a StepEvent, anchor: &Anchor) -> Parts<'a> {
        let extras = event.extras.as_deref();
        let d = event.descriptor;
        Parts {
            saga_type: d.saga_type,
            step: d.step,
            saga_id: event.saga_id.as_str(),
            status: event.status,
            attempt: event.attempt,
            order_id: extras.and_then(|e| e.order_id.as_deref()),
            at: anchor.wall(event.at),
            duration: event
                .status
                .is_terminal()
                .then(|| event.at.since(event.started)),
            error: event.error.as_deref(),
            metadata: extras.map_or(&[], |e| e.metadata.as_slice()),
            trace: event.trace.as_ref(),
            shape: (d.step_count > 0).then_some(Shape {
                step_index: d.step_index,
                step_count: d.step_count,
                compensable: d.compensable,
            }),
            cause: extras.and_then(|e| e.cause.as_deref()),
        }
    }

    /// The event of a transition given to `Tracker::record`.
    pub(crate) fn of_pending(pending: &'a Pending) -> Parts<'a> {
        Parts::of_transition(&pending.transition, pending.at, pending.trace.as_ref())
    }

    /// The event of `t`, recorded at `at` in the span `trace`.
    pub(crate) fn of_transition(
        t: &'a Transition,
        at: SystemTime,
        trace: Option<&'a TraceIds>,
    ) -> Parts<'a> {
        Parts {
            saga_type: &t.saga_type,
            step: &t.step,
            saga_id: &t.saga_id,
            status: t.status,
            attempt: t.attempt,
            order_id: t.order_id.as_deref(),
            at,
            duration: t.duration,
            error: t.error.as_ref(),
            metadata: &t.metadata,
            trace,
            shape: t.declared.map(|d| Shape {
                step_index: d.step_index,
                step_count: d.step_count,
                compensable: d.compensable,
            }),
            cause: t.cause.as_deref(),
        }
    }
}

/// Metadata entries and bytes kept free for what the worker adds: `traceId`, `spanId` and [`DROPPED_KEY`].
const RESERVED_ENTRIES: usize = 3;
const RESERVED_BYTES: usize = 128;
/// The metadata entry that says how many entries were dropped to fit the bounds.
pub(crate) const DROPPED_KEY: &str = "sagaTracker.droppedEntries";

/// Free text of an event cut to its bounds ([`bounds`]): what replaces the original when some of it is over.
#[derive(Debug, Default)]
pub(crate) struct Bounded {
    error: Option<StepError>,
    metadata: Option<Vec<(Cow<'static, str>, String)>>,
}

impl Bounded {
    /// Cut copies of the error and the metadata of `parts`, if some of them is over its bound; length checks
    /// only when nothing is.
    pub(crate) fn of(parts: &Parts<'_>) -> Option<Bounded> {
        let error_over = parts.error.is_some_and(|e| {
            e.kind.len() > bounds::ERROR_KIND || e.message.len() > bounds::ERROR_MESSAGE
        });
        let metadata_over = parts.metadata.len() > bounds::METADATA_ENTRIES - RESERVED_ENTRIES || {
            let mut total = 0;
            parts.metadata.iter().any(|(k, v)| {
                total += k.len() + v.len();
                k.len() > bounds::METADATA_KEY || v.len() > bounds::METADATA_VALUE
            }) || total > bounds::METADATA_TOTAL - RESERVED_BYTES
        };
        if !error_over && !metadata_over {
            return None;
        }
        let mut out = Bounded::default();
        if error_over && let Some(e) = parts.error {
            out.error = Some(StepError::new(
                bounds::truncate(&e.kind, bounds::ERROR_KIND),
                bounds::truncate(&e.message, bounds::ERROR_MESSAGE),
            ));
        }
        if metadata_over {
            // one value per key, the last wins (as when writing), in key order
            let unique: BTreeMap<&str, &str> = parts
                .metadata
                .iter()
                .map(|(k, v)| (k.as_ref(), v.as_str()))
                .collect();
            let mut kept = Vec::with_capacity(unique.len().min(bounds::METADATA_ENTRIES));
            let mut total = 0;
            let mut dropped = 0usize;
            for (k, v) in unique {
                let v = bounds::truncate(v, bounds::METADATA_VALUE);
                if k.len() > bounds::METADATA_KEY
                    || kept.len() == bounds::METADATA_ENTRIES - RESERVED_ENTRIES
                    || total + k.len() + v.len() > bounds::METADATA_TOTAL - RESERVED_BYTES
                {
                    dropped += 1;
                    continue;
                }
                total += k.len() + v.len();
                kept.push((Cow::Owned(k.to_owned()), v.into_owned()));
            }
            if dropped > 0 {
                kept.push((Cow::Borrowed(DROPPED_KEY), dropped.to_string()));
            }
            out.metadata = Some(kept);
        }
        Some(out)
    }

    /// `parts` with the cut error and metadata.
    pub(crate) fn apply<'c>(&'c self, parts: &Parts<'c>) -> Parts<'c> {
        Parts {
            error: self.error.as_ref().or(parts.error),
            metadata: self.metadata.as_deref().unwrap_or(parts.metadata),
            ..*parts
        }
    }
}

/// One encoded event in owned buffers (the outbox stores these).
#[cfg(feature = "outbox")]
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    pub event_id: Uuid,
    pub payload: Vec<u8>,
    pub traceparent: Option<String>,
}

/// Buffers for one event at a time: the payload and the `traceparent` header. Sinks copy what they keep.
#[derive(Debug, Default)]
pub(crate) struct EventBuf {
    payload: Vec<u8>,
    traceparent: String,
    truncated: bool,
}

impl EventBuf {
    /// Whether the last event encoded had free text cut to its bounds.
    pub(crate) fn was_truncated(&self) -> bool {
        self.truncated
    }

    /// Encodes `parts` (a fresh UUIDv7 with the event's time; free text cut to its bounds) and returns the
    /// envelope, borrowing this buffer.
    pub(crate) fn encode<'b>(
        &'b mut self,
        parts: &Parts<'b>,
        service: &str,
        framing: Framing,
    ) -> Envelope<'b> {
        let key = parts.saga_id;
        let bounded = Bounded::of(parts);
        self.truncated = bounded.is_some();
        let parts = &match &bounded {
            Some(b) => b.apply(parts),
            None => *parts,
        };
        let since_epoch = parts
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let event_id = Uuid::new_v7(Timestamp::from_unix(
            NoContext,
            since_epoch.as_secs(),
            since_epoch.subsec_nanos(),
        ));
        let recorded_at = system_time_to_micros(parts.at);
        let mut trace_hex = ([0u8; 32], [0u8; 16]);
        let trace = parts.trace.map(|trace| {
            (
                hex_into(&trace.trace_id, &mut trace_hex.0),
                hex_into(&trace.span_id, &mut trace_hex.1),
                trace.flags,
            )
        });
        self.payload.clear();
        framing.write_header(&mut self.payload);
        match (parts.metadata.is_empty(), trace) {
            // The common cases need no map: no metadata, or only the trace ids (keys in Avro map order).
            (true, None) => write_fields(
                &mut self.payload,
                fields(parts, &event_id, service, recorded_at, 0, [].into_iter()),
            ),
            (true, Some((trace_id, span_id, _))) => write_fields(
                &mut self.payload,
                fields(
                    parts,
                    &event_id,
                    service,
                    recorded_at,
                    2,
                    [(SPAN_ID_KEY, span_id), (TRACE_ID_KEY, trace_id)].into_iter(),
                ),
            ),
            (false, _) => {
                // Sorted, one value per key (the last wins), the trace ids over user entries.
                let mut metadata: BTreeMap<&str, &str> = BTreeMap::new();
                for (k, v) in parts.metadata {
                    metadata.insert(k, v);
                }
                if let Some((trace_id, span_id, _)) = trace {
                    metadata.insert(TRACE_ID_KEY, trace_id);
                    metadata.insert(SPAN_ID_KEY, span_id);
                }
                write_fields(
                    &mut self.payload,
                    fields(
                        parts,
                        &event_id,
                        service,
                        recorded_at,
                        metadata.len(),
                        metadata.iter().map(|(k, v)| (*k, *v)),
                    ),
                );
            }
        }
        self.traceparent.clear();
        if let Some((trace_id, span_id, flags)) = trace {
            let mut flags_hex = [0u8; 2];
            for part in [
                "00-",
                trace_id,
                "-",
                span_id,
                "-",
                hex_into(&[flags], &mut flags_hex),
            ] {
                self.traceparent.push_str(part);
            }
        }
        Envelope {
            key,
            payload: &self.payload,
            event_id,
            recorded_at,
            traceparent: trace.map(|_| self.traceparent.as_str()),
        }
    }
}

/// The fields to write for `parts`, with the idempotency key derived while writing.
fn fields<'x, M>(
    parts: &Parts<'x>,
    event_id: &'x Uuid,
    service: &'x str,
    recorded_at: i64,
    metadata_len: usize,
    metadata: M,
) -> EventFields<'x, M> {
    EventFields {
        event_id,
        idempotency_key: IdempotencyKey::Derived,
        saga_id: parts.saga_id,
        saga_type: parts.saga_type,
        step: parts.step,
        status: parts.status,
        attempt: parts.attempt,
        order_id: parts.order_id,
        service,
        recorded_at,
        duration_micros: parts
            .duration
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        error: parts.error,
        metadata_len,
        metadata,
        step_index: parts.shape.map(|s| i32::from(s.step_index)),
        step_count: parts.shape.map(|s| i32::from(s.step_count)),
        compensable: parts.shape.map(|s| s.compensable),
        cause_idempotency_key: parts.cause,
    }
}

/// Lowercase hex of `bytes` into `out` (exactly twice as long; the `hex` crate).
fn hex_into<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o str {
    match hex::encode_to_slice(bytes, out) {
        // Only ASCII hex digits were written.
        Ok(()) => std::str::from_utf8(out).unwrap_or_default(),
        Err(_) => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_complete() {
        let mut out = [0u8; 6];
        assert_eq!(hex_into(&[0x00, 0xab, 0x7f], &mut out), "00ab7f");
    }
}
