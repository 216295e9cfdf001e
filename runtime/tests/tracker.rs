//! The Tracker with in-process sinks: what it fills in, bad input, spooling, OpenTelemetry ids.

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use saga_tracker::{
    BuildError, JsonLinesSink, MemorySink, RecordError, StepError, StepStatus, Tracker, Transition,
    codec,
};

const T: Duration = Duration::from_secs(10);

fn memory_tracker() -> (Tracker, MemorySink) {
    memory_tracker_named("order-service")
}

fn memory_tracker_named(service: &str) -> (Tracker, MemorySink) {
    let sink = MemorySink::new();
    let tracker = Tracker::builder()
        .service(service)
        .sink(sink.clone())
        .without_spool()
        .build()
        .expect("build");
    (tracker, sink)
}

#[test]
fn fills_in_ids_time_service_and_idempotency_key() {
    let (tracker, sink) = memory_tracker();
    let before = saga_tracker::event::system_time_to_micros(std::time::SystemTime::now());
    tracker
        .record(
            Transition::new("OrderSaga", "charge_payment", "saga-7", StepStatus::Failed)
                .attempt(2)
                .order_id("order-7")
                .duration(Duration::from_micros(1532))
                .error(StepError::new("InsufficientFunds", "balance 10 < 25"))
                .metadata("tenant", "acme"),
        )
        .expect("record");
    tracker
        .record(Transition::new(
            "OrderSaga",
            "charge_payment",
            "saga-7",
            StepStatus::Started,
        ))
        .expect("record");
    tracker.flush(T).expect("flush");
    let events = sink.events();
    assert_eq!(events.len(), 2);
    let e = &events[0];
    assert_eq!(e.event_id.get_version_num(), 7, "UUIDv7");
    assert_ne!(events[0].event_id, events[1].event_id);
    assert_eq!(e.idempotency_key, "saga-7:charge_payment:FAILED:2");
    assert_eq!(events[1].idempotency_key, "saga-7:charge_payment:STARTED:1");
    assert_eq!(e.service, "order-service");
    assert_eq!(e.order_id.as_deref(), Some("order-7"));
    assert_eq!(e.duration_micros, Some(1532));
    assert_eq!(
        e.error,
        Some(StepError::new("InsufficientFunds", "balance 10 < 25"))
    );
    assert_eq!(e.metadata.get("tenant").map(String::as_str), Some("acme"));
    assert!(e.recorded_at >= before && e.recorded_at <= events[1].recorded_at);
    assert!(!e.metadata.contains_key("traceId"), "no trace active");
    assert_eq!(sink.messages()[0].key, "saga-7");
    assert_eq!(tracker.stats().recorded, 2);
    assert_eq!(tracker.stats().delivered, 2);
}

#[test]
fn trace_and_span_ids_of_the_current_opentelemetry_span_go_into_metadata_and_traceparent() {
    let (tracker, sink) = memory_tracker();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("test");
    let (trace_id, span_id) = tracer.in_span("handle-order", |cx| {
        tracker
            .record(Transition::new(
                "OrderSaga",
                "reserve_stock",
                "saga-1",
                StepStatus::Started,
            ))
            .expect("record");
        let sc = cx.span().span_context().clone();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    });
    tracker.flush(T).expect("flush");
    let message = &sink.messages()[0];
    assert_eq!(message.event.metadata.get("traceId"), Some(&trace_id));
    assert_eq!(message.event.metadata.get("spanId"), Some(&span_id));
    assert_eq!(message.event.trace_id(), Some(trace_id.as_str()));
    assert_eq!(trace_id.len(), 32);
    assert!(
        trace_id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(
        message.traceparent.as_deref(),
        Some(format!("00-{trace_id}-{span_id}-01").as_str())
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let err = Tracker::builder()
        .service("  ")
        .sink(MemorySink::new())
        .build()
        .expect_err("empty service");
    assert!(matches!(err, BuildError::EmptyService), "{err}");
    assert!(err.to_string().contains("service name is empty"));
    let err = Tracker::builder()
        .service("svc")
        .build()
        .expect_err("no sink");
    assert!(matches!(err, BuildError::NoSink), "{err}");
    let err = Tracker::builder()
        .service("svc")
        .sink(MemorySink::new())
        .queue_capacity(0)
        .build()
        .expect_err("zero");
    assert!(matches!(err, BuildError::ZeroQueueCapacity), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, b"").expect("write");
    let err = Tracker::builder()
        .service("svc")
        .sink(MemorySink::new())
        .spool_dir(file.join("spool"))
        .build()
        .expect_err("spool");
    assert!(matches!(err, BuildError::Spool(_)), "{err}");
    assert!(err.to_string().contains("not writable"), "{err}");

    let (tracker, sink) = memory_tracker();
    let err = tracker
        .record(Transition::new(
            "OrderSaga",
            "reserve_stock",
            "",
            StepStatus::Started,
        ))
        .expect_err("empty id");
    assert!(matches!(err, RecordError::EmptySagaId { .. }), "{err}");
    assert!(
        tracker
            .record(Transition::new("", "x", "s", StepStatus::Started))
            .is_err()
    );
    tracker.flush(T).expect("flush");
    assert!(sink.events().is_empty());
    assert_eq!(tracker.stats().recorded, 0);
}

#[test]
fn a_full_queue_spools_on_the_callers_thread_instead_of_waiting() {
    /// A sink that blocks until released, so the worker's queue fills up.
    struct Gate(std::sync::Mutex<()>, MemorySink);
    impl saga_tracker::Sink for Gate {
        fn send(
            &self,
            envelope: saga_tracker::sink::Envelope,
            delivery: saga_tracker::sink::Delivery,
        ) {
            let _held = self.0.lock();
            self.1.send(envelope, delivery);
        }
        fn flush(&self, timeout: Duration) -> Result<(), saga_tracker::sink::SinkError> {
            self.1.flush(timeout)
        }
        fn describe(&self) -> String {
            "gate".into()
        }
    }
    let gate = std::sync::Arc::new(Gate(std::sync::Mutex::new(()), MemorySink::new()));
    let spool = tempfile::tempdir().expect("tempdir");
    let tracker = Tracker::builder()
        .service("svc")
        .sink(gate.clone())
        .spool_dir(spool.path())
        .queue_capacity(2)
        .build()
        .expect("build");
    let held = gate.0.lock().expect("lock");
    for i in 0..10 {
        tracker
            .record(Transition::new(
                "S",
                "step",
                format!("saga-{i}"),
                StepStatus::Started,
            ))
            .expect("record");
    }
    drop(held);
    tracker.flush(T).expect("flush");
    let stats = tracker.stats();
    assert_eq!(stats.recorded, 10);
    assert!(stats.spooled >= 7, "{stats:?}");
    assert_eq!(stats.delivered + stats.spooled, 10, "{stats:?}");
    assert_eq!(stats.lost, 0);
    // The spooled ones go out on replay, unchanged.
    let report = tracker.replay_spool().expect("replay");
    assert_eq!(report.resent as u64, stats.spooled);
    tracker.flush(T).expect("flush");
    let mut ids: Vec<_> = gate.1.events().into_iter().map(|e| e.saga_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    assert_eq!(tracker.stats().replayed, stats.spooled);
}

#[test]
fn a_corrupt_spool_file_is_set_aside_and_the_rest_replayed() {
    let spool = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        spool.path().join("00000000000000000001-x.spool"),
        b"garbage",
    )
    .expect("write");
    let (_, sink) = memory_tracker();
    let tracker = Tracker::builder()
        .service("svc")
        .sink(sink.clone())
        .spool_dir(spool.path())
        .build()
        .expect("build");
    let report = tracker.replay_spool().expect("replay");
    assert_eq!(report.corrupt, 1);
    assert!(spool.path().join("00000000000000000001-x.corrupt").exists());
}

#[test]
fn json_lines_sink_writes_one_decoded_event_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let tracker = Tracker::builder()
        .service("svc")
        .sink(JsonLinesSink::append_to(&path).expect("open"))
        .without_spool()
        .build()
        .expect("build");
    for status in [StepStatus::Started, StepStatus::Succeeded] {
        tracker
            .record(Transition::new(
                "OrderSaga",
                "reserve_stock",
                "saga-1",
                status,
            ))
            .expect("record");
    }
    tracker.flush(T).expect("flush");
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["status"], "SUCCEEDED");
    assert_eq!(lines[0]["sagaId"], "saga-1");
    assert!(JsonLinesSink::append_to(dir.path().join("no/such/dir/x")).is_err());
}

#[test]
fn confluent_framing_when_a_schema_registry_id_is_configured() {
    let sink = MemorySink::new();
    let tracker = Tracker::builder()
        .service("svc")
        .sink(sink.clone())
        .without_spool()
        .schema_registry_id(7)
        .build()
        .expect("build");
    tracker
        .record(Transition::new(
            "OrderSaga",
            "reserve_stock",
            "saga-1",
            StepStatus::Started,
        ))
        .expect("record");
    tracker.flush(T).expect("flush");
    let payload = &sink.messages()[0].payload;
    assert_eq!(&payload[..5], &[0, 0, 0, 0, 7]);
    assert_eq!(
        codec::decode_confluent(payload, 7).expect("decode").saga_id,
        "saga-1"
    );
}

#[test]
fn scoped_default_overrides_the_global_one_on_this_thread() {
    let (tracker, _) = memory_tracker();
    saga_tracker::with_default(&tracker, || {
        assert_eq!(
            saga_tracker::current().expect("scoped").service(),
            "order-service"
        );
        let (inner, _) = memory_tracker_named("inner-service");
        saga_tracker::with_default(&inner, || {
            assert_eq!(
                saga_tracker::current().expect("nested").service(),
                "inner-service"
            );
        });
        assert_eq!(
            saga_tracker::current().expect("restored").service(),
            "order-service"
        );
    });
    let other = std::thread::spawn(|| saga_tracker::current().map(|t| t.service().to_owned()));
    assert_ne!(
        other.join().expect("thread").as_deref(),
        Some("order-service"),
        "scope is per thread"
    );
}

#[test]
fn dropping_the_tracker_delivers_what_was_queued() {
    let sink = MemorySink::new();
    {
        let tracker = Tracker::builder()
            .service("svc")
            .sink(sink.clone())
            .without_spool()
            .build()
            .expect("build");
        for i in 0..100 {
            tracker
                .record(Transition::new(
                    "S",
                    "step",
                    format!("saga-{i}"),
                    StepStatus::Started,
                ))
                .expect("record");
        }
    }
    assert_eq!(sink.events().len(), 100);
}

/// A sink that acknowledges every event (at once, or when told) and keeps what it was sent; `during` runs on
/// each send with the number of events sent so far (to spool more events in the middle of a replay).
struct AckSink {
    sent: std::sync::Mutex<Vec<Vec<u8>>>,
    held: std::sync::Mutex<Option<Vec<saga_tracker::sink::Delivery>>>,
    during: Box<dyn Fn(usize) + Send + Sync>,
}

impl AckSink {
    fn new(hold: bool, during: impl Fn(usize) + Send + Sync + 'static) -> std::sync::Arc<AckSink> {
        std::sync::Arc::new(AckSink {
            sent: std::sync::Mutex::new(Vec::new()),
            held: std::sync::Mutex::new(hold.then(Vec::new)),
            during: Box::new(during),
        })
    }

    fn sent(&self) -> Vec<Vec<u8>> {
        self.sent.lock().expect("lock").clone()
    }

    /// Acknowledges the held events and stops holding.
    fn release(&self) {
        let held = self.held.lock().expect("lock").take();
        for delivery in held.into_iter().flatten() {
            delivery.delivered();
        }
    }
}

impl saga_tracker::Sink for AckSink {
    fn send(&self, envelope: saga_tracker::sink::Envelope, delivery: saga_tracker::sink::Delivery) {
        let n = {
            let mut sent = self.sent.lock().expect("lock");
            sent.push(envelope.payload.to_vec());
            sent.len()
        };
        (self.during)(n);
        match self.held.lock().expect("lock").as_mut() {
            Some(held) => held.push(delivery),
            None => delivery.delivered(),
        }
    }
    fn flush(&self, _: Duration) -> Result<(), saga_tracker::sink::SinkError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "ack".into()
    }
}

/// Spools `n` events of 4 sagas, times out of order and tied (payload `event-<i>`); returns the payloads in the
/// order their files sort, the order a replay must send them in.
fn spool_events(dir: &std::path::Path, n: usize) -> Vec<Vec<u8>> {
    let spool = saga_tracker::spool::Spool::open(dir, false).expect("spool");
    let mut files = Vec::new();
    for i in 0..n {
        let at = i64::try_from((i * 7) % 5).expect("small") * 1_000;
        let id = uuid::Uuid::now_v7();
        let payload = format!("event-{i}").into_bytes();
        spool
            .append(at, id, &format!("saga-{}", i % 4), &payload)
            .expect("append");
        files.push((saga_tracker::spool::SpoolKey::new(at, id), payload));
    }
    files.sort();
    files.into_iter().map(|(_, payload)| payload).collect()
}

fn replay_tracker(sink: std::sync::Arc<AckSink>, spool: &std::path::Path, chunk: usize) -> Tracker {
    Tracker::builder()
        .service("svc")
        .sink(sink)
        .spool_dir(spool)
        .spool_replay_chunk(chunk)
        .build()
        .expect("build")
}

#[test]
fn a_replay_sends_in_recorded_order_across_chunks_each_file_once() {
    for chunk in [1, 4, 30, 1_000] {
        let spool = tempfile::tempdir().expect("tempdir");
        let expected = spool_events(spool.path(), 30);
        let sink = AckSink::new(false, |_| {});
        let tracker = replay_tracker(sink.clone(), spool.path(), chunk);
        let report = tracker.replay_spool().expect("replay");
        assert_eq!(report.resent, 30, "chunk {chunk}: {report:?}");
        assert_eq!(sink.sent(), expected, "chunk {chunk}");
        assert_eq!(tracker.stats().replayed, 30);
        assert_eq!(tracker.spooled_pending().expect("count"), 0);
        assert_eq!(tracker.replay_spool().expect("again").resent, 0);
    }
}

#[test]
fn events_spooled_during_a_replay_are_sent_once_now_or_by_the_next_replay() {
    let spool = tempfile::tempdir().expect("tempdir");
    let mut expected = spool_events(spool.path(), 20);
    let writer = saga_tracker::spool::Spool::open(spool.path(), false).expect("spool");
    let sink = AckSink::new(false, move |sent| {
        if sent == 6 {
            // One event recorded before the replay's position, one after it.
            for (at, payload) in [(0, "behind"), (9_000_000, "ahead")] {
                writer
                    .append(at, uuid::Uuid::now_v7(), "saga-late", payload.as_bytes())
                    .expect("append");
            }
        }
    });
    let tracker = replay_tracker(sink.clone(), spool.path(), 4);
    assert_eq!(tracker.replay_spool().expect("replay").resent, 21);
    expected.push(b"ahead".to_vec());
    assert_eq!(
        sink.sent(),
        expected,
        "the file ahead joins the replay, in order"
    );
    assert_eq!(tracker.spooled_pending().expect("count"), 1);
    assert_eq!(tracker.replay_spool().expect("next replay").resent, 1);
    expected.push(b"behind".to_vec());
    assert_eq!(
        sink.sent(),
        expected,
        "the file behind goes with the next replay"
    );
    assert_eq!(tracker.spooled_pending().expect("count"), 0);
    assert_eq!(tracker.stats().replayed, 22);
}

#[test]
fn a_replay_skips_files_another_replay_has_in_flight() {
    let spool = tempfile::tempdir().expect("tempdir");
    let expected = spool_events(spool.path(), 10);
    let sink = AckSink::new(true, |_| {});
    let tracker = replay_tracker(sink.clone(), spool.path(), 3);
    assert_eq!(tracker.replay_spool().expect("replay").resent, 10);
    let second = tracker.replay_spool().expect("replay while in flight");
    assert_eq!((second.resent, second.in_flight), (0, 10), "{second:?}");
    sink.release();
    assert_eq!(tracker.replay_spool().expect("after").resent, 0);
    assert_eq!(sink.sent(), expected);
    assert_eq!(tracker.spooled_pending().expect("count"), 0);
}

#[test]
fn a_replay_ignores_tmp_and_stray_files_and_sets_misnamed_spool_files_aside() {
    let spool = tempfile::tempdir().expect("tempdir");
    let expected = spool_events(spool.path(), 5);
    let tmp = spool
        .path()
        .join(".00000000000000000001-half-written.spool.tmp");
    let stray = spool.path().join("notes.txt");
    std::fs::write(&tmp, b"SPL1").expect("write");
    std::fs::write(&stray, b"hello").expect("write");
    std::fs::write(spool.path().join("copied-by-hand.spool"), b"SPL1").expect("write");
    let sink = AckSink::new(false, |_| {});
    let tracker = replay_tracker(sink.clone(), spool.path(), 2);
    let report = tracker.replay_spool().expect("replay");
    assert_eq!((report.resent, report.corrupt), (5, 1), "{report:?}");
    assert_eq!(sink.sent(), expected);
    assert!(tmp.exists() && stray.exists(), "left alone");
    assert!(spool.path().join("copied-by-hand.corrupt").exists());
    assert_eq!(tracker.spooled_pending().expect("count"), 0);
}
