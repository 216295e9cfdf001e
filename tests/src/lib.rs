//! Shared helpers for saga-tracker integration tests: the saga declaration every test "service" shares, and a
//! [`Recorder`] (a tracker writing to a [`MemorySink`]).

use std::time::Duration;

use saga_tracker::{MemorySink, Saga, SagaEvent, StepStatus, Tracker};

/// The order saga, declared once and shared by every participating service.
#[derive(Saga)]
#[saga(name = "OrderSaga")]
pub enum OrderSaga {
    /// Reserve the ordered items.
    #[step(compensable)]
    ReserveStock,
    /// Charge the customer.
    #[step(compensable)]
    ChargePayment,
    /// Confirm the order (wire name `confirm`).
    #[step(name = "confirm")]
    ConfirmOrder,
}

/// A tracker recording into a [`MemorySink`].
#[derive(Debug, Clone)]
pub struct Recorder {
    /// The sink.
    pub sink: MemorySink,
    /// The tracker.
    pub tracker: Tracker,
}

impl Recorder {
    /// A recorder for `service`.
    pub fn new(service: &str) -> Self {
        let sink = MemorySink::new();
        let tracker = Tracker::builder()
            .service(service)
            .sink(sink.clone())
            .without_spool()
            .build()
            .expect("a tracker with a memory sink builds");
        Recorder { sink, tracker }
    }

    /// Every event so far (after flushing the tracker).
    pub fn events(&self) -> Vec<SagaEvent> {
        self.tracker
            .flush(Duration::from_secs(10))
            .expect("the memory sink flushes");
        self.sink.events()
    }

    /// `(step, status)` of every event so far.
    pub fn transitions(&self) -> Vec<(String, StepStatus)> {
        self.events()
            .into_iter()
            .map(|e| (e.step, e.status))
            .collect()
    }
}
