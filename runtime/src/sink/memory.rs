//! An in-memory sink for tests: keeps every message, decoded.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Delivery, Envelope, Sink, SinkError};
use crate::codec;
use crate::event::SagaEvent;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct RecordedMessage {
    /// The message key (saga id).
    pub key: String,
    /// The framed bytes.
    pub payload: Vec<u8>,
    /// The `traceparent` header, if any.
    pub traceparent: Option<String>,
    /// The payload decoded again with [`codec::decode`] (so every test also checks the codec).
    pub event: SagaEvent,
}

/// Keeps every message in memory. Cloning gives another handle to the same store.
///
/// ```
/// use saga_tracker::{MemorySink, StepStatus, Tracker, Transition};
/// let sink = MemorySink::new();
/// let tracker = Tracker::builder().service("demo").sink(sink.clone()).without_spool().build().unwrap();
/// tracker.record(Transition::new("OrderSaga", "reserve_stock", "saga-1", StepStatus::Started)).unwrap();
/// tracker.flush(std::time::Duration::from_secs(5)).unwrap();
/// assert_eq!(sink.events()[0].step, "reserve_stock");
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    messages: Arc<Mutex<Vec<RecordedMessage>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<RecordedMessage>> {
        self.messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<RecordedMessage> {
        self.lock().clone()
    }

    /// Every event so far, in arrival order.
    pub fn events(&self) -> Vec<SagaEvent> {
        self.lock().iter().map(|m| m.event.clone()).collect()
    }

    /// The events of one saga, in arrival order.
    pub fn events_of(&self, saga_id: &str) -> Vec<SagaEvent> {
        self.lock()
            .iter()
            .filter(|m| m.event.saga_id == saga_id)
            .map(|m| m.event.clone())
            .collect()
    }

    /// Removes and returns every message.
    pub fn take(&self) -> Vec<RecordedMessage> {
        std::mem::take(&mut *self.lock())
    }
}

impl Sink for MemorySink {
    fn send(&self, envelope: Envelope<'_>, delivery: Delivery) {
        let decoded = codec::decode_either_framing(envelope.payload);
        match decoded {
            Ok(event) => {
                self.lock().push(RecordedMessage {
                    key: envelope.key.to_owned(),
                    payload: envelope.payload.to_vec(),
                    traceparent: envelope.traceparent.map(str::to_owned),
                    event,
                });
                delivery.delivered();
            }
            Err(err) => delivery.failed(
                envelope.key,
                envelope.payload,
                &format!("undecodable payload: {err}"),
            ),
        }
    }

    fn flush(&self, _timeout: Duration) -> Result<(), SinkError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}
