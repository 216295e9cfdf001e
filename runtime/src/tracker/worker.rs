//! The tracker's worker thread: turns queued transitions into framed Avro messages and hands them to the sink.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, SystemTime};

use uuid::{NoContext, Timestamp, Uuid};

use crate::event::system_time_to_micros;

use crate::codec::Framing;
use crate::codec::write::{EventFields, IdempotencyKey, write_fields};
use crate::otel::{SPAN_ID_KEY, TRACE_ID_KEY, TraceIds};
use crate::sink::{Delivery, Envelope, Origin, Reporter, Sink};
use crate::transition::Transition;

/// A transition with what the caller's thread captured: time and trace. The worker derives the rest
/// (eventId, recordedAt µs), keeping the caller's share of the work small.
pub(crate) struct Pending {
    pub at: SystemTime,
    pub trace: Option<TraceIds>,
    pub transition: Transition,
}

// Transitions travel unboxed: boxing would cost the caller an allocation per event.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Command {
    Record(Pending),
    Flush(SyncSender<()>),
}

/// Hand-off between callers and the worker, built so a caller never pays for a wake-up (a futex call costs
/// microseconds — more than recording itself — and on a busy machine it can hand the caller's core to the worker):
/// the worker drains the queue, then lingers [`LINGER`] and drains again (librdkafka lingers 5 ms before a batch
/// anyway). Callers wake it early only when [`WAKE_AT`] events pile up within one linger; flush and shutdown
/// wake it at once. Idle, the worker wakes 200 times a second to find nothing, which costs next to nothing.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    lingering: AtomicBool,
    /// Set by flush and shutdown: the next round drains everything, not just its batch.
    drain_all: AtomicBool,
    /// Bumped by callers, taken by the worker once per round: alone on its cache lines.
    queued: crate::stats::Padded<AtomicUsize>,
    thread: OnceLock<Thread>,
}

/// How long the worker waits for more events before it drains again.
pub(crate) const LINGER: Duration = Duration::from_millis(5);
/// Queued events at which a caller wakes a lingering worker early.
pub(crate) const WAKE_AT: usize = 4096;

impl Wakeup {
    /// After a successful enqueue.
    #[inline]
    pub(crate) fn after_push(&self) {
        let queued = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        if queued >= WAKE_AT && self.lingering.swap(false, Ordering::AcqRel) {
            self.unpark();
        }
    }

    /// Wakes the worker to drain everything queued (flush, shutdown).
    pub(crate) fn wake(&self) {
        self.drain_all.store(true, Ordering::Release);
        self.unpark();
    }

    fn unpark(&self) {
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
    }

    pub(crate) fn set_thread(&self, thread: Thread) {
        let _ = self.thread.set(thread);
    }
}

pub(crate) fn run(
    rx: Receiver<Command>,
    wakeup: Arc<Wakeup>,
    service: Arc<str>,
    framing: Framing,
    sink: Arc<dyn Sink>,
    reporter: Arc<Reporter>,
) {
    lower_own_priority();
    let handle = |command: Command| match command {
        Command::Record(pending) => {
            let envelope = encode(&pending, &service, framing);
            let delivery = Delivery::new(
                reporter.clone(),
                Origin::Live,
                envelope.event_id,
                envelope.recorded_at,
            );
            sink.send(envelope, delivery);
        }
        Command::Flush(done) => {
            let _ = done.send(());
        }
    };
    loop {
        // A round takes the batch that was queued when it began, so the worker stays a batch behind the callers
        // instead of chasing the slot each of them is writing (that moves a cache line between cores per event).
        // Flush and shutdown drain everything; so does a timer round with nothing counted.
        let drain_all = wakeup.drain_all.swap(false, Ordering::AcqRel);
        let counted = wakeup.queued.swap(0, Ordering::AcqRel);
        let mut budget = if drain_all || counted == 0 {
            usize::MAX
        } else {
            counted
        };
        while budget > 0 {
            match rx.try_recv() {
                Ok(command) => {
                    handle(command);
                    budget -= 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        wakeup.lingering.store(true, Ordering::Release);
        std::thread::park_timeout(LINGER);
        wakeup.lingering.store(false, Ordering::Release);
    }
}

/// Recording is background work: when the worker and a handler's thread want the same core, the handler should
/// win. On Linux a thread has its own nice value; the worker takes nice 10 (it only lowers its own priority, which
/// needs no privilege). Elsewhere, nothing changes.
fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes plain integers; with PRIO_PROCESS and who = 0 Linux applies it to the calling
        // thread only. Failure (e.g. a seccomp filter) leaves the priority as it was, which is harmless.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        if rc != 0 {
            tracing::debug!("saga-tracker: could not lower the worker thread's priority");
        }
    }
}

/// Encodes one pending transition into an envelope: a UUIDv7 with the transition's time, and the framed bytes.
pub(crate) fn encode(pending: &Pending, service: &str, framing: Framing) -> Envelope {
    let t = &pending.transition;
    let since_epoch = pending
        .at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let event_id = Uuid::new_v7(Timestamp::from_unix(
        NoContext,
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
    ));
    let recorded_at = system_time_to_micros(pending.at);
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
            event_id: &event_id,
            idempotency_key: IdempotencyKey::Derived,
            saga_id: &t.saga_id,
            saga_type: &t.saga_type,
            step: &t.step,
            status: t.status,
            attempt: t.attempt,
            order_id: t.order_id.as_deref(),
            service,
            recorded_at,
            duration_micros: t
                .duration
                .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            error: t.error.as_ref(),
            metadata_len: metadata.len(),
            metadata: metadata.iter().map(|(k, v)| (*k, *v)),
        },
    );
    Envelope {
        key: t.saga_id.clone(),
        payload,
        event_id,
        recorded_at,
        traceparent: pending.trace.map(|trace| trace.traceparent()),
    }
}
