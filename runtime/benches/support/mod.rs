//! Shared by the benches: the bench saga, the functions under test, and a tracker on the mock cluster.
#![allow(dead_code, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use saga_tracker::sink::PRODUCER_DEFAULTS;
use saga_tracker::testing::TestKafka;
use saga_tracker::{KafkaSink, Saga, Tracker, saga_step};

/// Calls per iteration of the throughput bench (then a flush): 2 events each, half the tracker's 65 536-slot queue.
pub const CHUNK: u64 = 16_384;

/// Calls between flushes in the caller-overhead bench: 32 768 events, half the tracker's queue. The worker drains
/// concurrently (it drains every 2 ms while events come), as in a busy service; the flush only keeps the queue
/// from overflowing and is not timed.
pub const BURST: u64 = 16_384;

#[derive(Saga)]
pub enum BenchSaga {
    Work,
}

#[derive(Debug, thiserror::Error)]
#[error("bench error")]
pub struct BenchError;

#[inline(never)]
pub fn plain(id: u64) -> Result<u64, BenchError> {
    Ok(black_box(id).wrapping_mul(31))
}

#[saga_step(BenchSaga, Work, saga_id = id)]
#[inline(never)]
pub fn annotated(id: u64) -> Result<u64, BenchError> {
    Ok(black_box(id).wrapping_mul(31))
}

#[tracing::instrument]
#[inline(never)]
pub fn instrumented(id: u64) -> Result<u64, BenchError> {
    Ok(black_box(id).wrapping_mul(31))
}

#[fastrace::trace]
#[inline(never)]
pub fn fastraced(id: u64) -> Result<u64, BenchError> {
    Ok(black_box(id).wrapping_mul(31))
}

#[inline(never)]
pub async fn plain_async(id: u64) -> Result<u64, BenchError> {
    Ok(black_box(id).wrapping_mul(31))
}

#[saga_step(BenchSaga, Work, saga_id = id)]
#[inline(never)]
pub async fn annotated_async(id: u64) -> Result<u64, BenchError> {
    Ok(black_box(id).wrapping_mul(31))
}

#[tracing::instrument]
#[inline(never)]
pub async fn instrumented_async(id: u64) -> Result<u64, BenchError> {
    Ok(black_box(id).wrapping_mul(31))
}

#[fastrace::trace]
#[inline(never)]
pub async fn fastraced_async(id: u64) -> Result<u64, BenchError> {
    Ok(black_box(id).wrapping_mul(31))
}

/// Polls a future that never waits, without an executor's bookkeeping.
pub fn run_ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("bench futures never wait"),
    }
}

/// A mock cluster (or SAGA_TRACKER_TEST_BROKERS) with the topic, and a tracker publishing to it.
pub fn kafka_tracker(service: &str) -> (TestKafka, Tracker, String, tempfile::TempDir) {
    // One mock broker: every broker is threads in this process, competing with the caller for two cores.
    let kafka = TestKafka::start_with(1).expect("kafka");
    let topic = kafka.unique_topic("saga.tracker");
    kafka.create_topic(&topic, 3).expect("topic");
    let spool = tempfile::tempdir().expect("spool");
    let sink = KafkaSink::builder(kafka.brokers())
        .topic(&topic)
        .build()
        .expect("sink");
    let tracker = Tracker::builder()
        .service(service)
        .sink(sink)
        .spool_dir(spool.path())
        .build()
        .expect("tracker");
    (kafka, tracker, topic, spool)
}

pub fn flush(tracker: &Tracker) {
    tracker.flush(Duration::from_secs(60)).expect("flush");
}

/// Flushes from another thread: librdkafka serves delivery reports on the thread that flushes, and a handler's
/// thread never flushes between calls, so the measured thread's caches stay as a handler's would.
pub fn flush_elsewhere(tracker: &Tracker) {
    std::thread::scope(|s| {
        s.spawn(|| flush(tracker));
    });
}

/// The baseline producer: raw rdkafka with the sink's producer configuration, on this thread's priority.
pub fn raw_producer(kafka: &TestKafka) -> ThreadedProducer<DefaultProducerContext> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.brokers());
    for (k, v) in PRODUCER_DEFAULTS {
        config.set(k, v);
    }
    config.create().expect("raw producer")
}

/// The largest message on `topic`: the raw baseline sends payloads of this size.
pub fn largest_payload(kafka: &TestKafka, topic: &str) -> usize {
    kafka
        .read_all(topic, Duration::from_secs(30))
        .expect("read")
        .iter()
        .map(|m| rdkafka::Message::payload(m).map_or(0, <[u8]>::len))
        .max()
        .unwrap_or(100)
}

/// What an annotated call sends, done raw: `calls` times two messages under a fresh decimal key (as a call sends
/// STARTED and SUCCEEDED keyed by its saga id), then a flush that waits for every acknowledgement.
pub fn raw_calls(
    raw: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    payload: &[u8],
    next: &mut u64,
    calls: u64,
) {
    for _ in 0..calls {
        *next += 1;
        let key = next.to_string();
        for _ in 0..2 {
            let mut record = BaseRecord::to(topic).key(&key).payload(payload);
            while let Err((_, back)) = raw.send(record) {
                record = back;
                raw.poll(Duration::from_millis(1));
            }
        }
    }
    raw.flush(Duration::from_secs(60)).expect("raw flush");
}

/// Acknowledges every event at once.
pub struct NullSink;

impl saga_tracker::Sink for NullSink {
    fn send(
        &self,
        _envelope: saga_tracker::sink::Envelope,
        delivery: saga_tracker::sink::Delivery,
    ) {
        delivery.delivered();
    }
    fn flush(&self, _timeout: Duration) -> Result<(), saga_tracker::sink::SinkError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "null".into()
    }
}
