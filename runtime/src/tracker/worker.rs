//! The tracker's worker thread: turns queued transitions into framed Avro messages and hands them to the sink.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

use uuid::Uuid;

use crate::codec::Framing;
use crate::codec::write::{EventFields, IdempotencyKey, write_fields};
use crate::otel::{SPAN_ID_KEY, TRACE_ID_KEY, TraceIds};
use crate::sink::{Delivery, Envelope, Origin, Reporter, Sink};
use crate::transition::Transition;

/// A transition with what the caller's thread captured: id, time, trace.
pub(crate) struct Pending {
    pub event_id: Uuid,
    pub recorded_at: i64,
    pub trace: Option<TraceIds>,
    pub transition: Transition,
}

pub(crate) enum Command {
    Record(Pending),
    Flush(SyncSender<()>),
}

pub(crate) fn run(rx: Receiver<Command>, service: Arc<str>, framing: Framing, sink: Arc<dyn Sink>, reporter: Arc<Reporter>) {
    while let Ok(command) = rx.recv() {
        match command {
            Command::Record(pending) => {
                let envelope = encode(&pending, &service, framing);
                let delivery = Delivery::new(reporter.clone(), Origin::Live, envelope.event_id, envelope.recorded_at);
                sink.send(envelope, delivery);
            }
            Command::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Encodes one pending transition into an envelope.
pub(crate) fn encode(pending: &Pending, service: &str, framing: Framing) -> Envelope {
    let t = &pending.transition;
    let mut trace_hex = None;
    let mut metadata: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in &t.metadata {
        metadata.insert(k, v);
    }
    if let Some(trace) = &pending.trace {
        trace_hex = Some((trace.trace_id_hex(), trace.span_id_hex()));
    }
    if let Some((trace_id, span_id)) = &trace_hex {
        metadata.insert(TRACE_ID_KEY, trace_id);
        metadata.insert(SPAN_ID_KEY, span_id);
    }
    let mut payload = Vec::with_capacity(160 + t.saga_id.len() * 2 + t.metadata.len() * 32);
    framing.write_header(&mut payload);
    write_fields(
        &mut payload,
        EventFields {
            event_id: &pending.event_id,
            idempotency_key: IdempotencyKey::Derived,
            saga_id: &t.saga_id,
            saga_type: &t.saga_type,
            step: &t.step,
            status: t.status,
            attempt: t.attempt,
            order_id: t.order_id.as_deref(),
            service,
            recorded_at: pending.recorded_at,
            duration_micros: t.duration.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            error: t.error.as_ref(),
            metadata_len: metadata.len(),
            metadata: metadata.iter().map(|(k, v)| (*k, *v)),
        },
    );
    Envelope {
        key: t.saga_id.clone(),
        payload,
        event_id: pending.event_id,
        recorded_at: pending.recorded_at,
        traceparent: pending.trace.map(|trace| trace.traceparent()),
    }
}
