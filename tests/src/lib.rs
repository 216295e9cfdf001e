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

/// A future that is pending on its first poll and ready on its second (a step that awaits once).
#[derive(Debug, Default)]
pub struct YieldOnce(pub bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            std::task::Poll::Pending
        }
    }
}

/// Polls `future` (under `tracker` as the default) once on this thread, then to completion on another thread, as a
/// work-stealing runtime may; panics unless it is pending on the first poll and ready on the second.
pub fn start_here_finish_elsewhere<F: std::future::Future + Send + 'static>(
    tracker: &Tracker,
    future: F,
) -> F::Output
where
    F::Output: Send,
{
    let mut future = Box::pin(saga_tracker::with_default_async(tracker, future));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(future.as_mut().poll(&mut cx).is_pending());
    std::thread::spawn(move || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("ready on the second poll"),
        }
    })
    .join()
    .expect("thread")
}
