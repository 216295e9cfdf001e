//! KafkaSink on the real Kafka protocol (mock cluster, or `SAGA_TRACKER_TEST_BROKERS`).

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
use rdkafka::message::{Headers, Message};
use saga_tracker::sink::SinkError;
use saga_tracker::testing::TestKafka;
use saga_tracker::{KafkaSink, StepStatus, Tracker, Transition, codec};

const T: Duration = Duration::from_secs(30);

/// Kafka's Java `Utils.murmur2`, the hash behind the default partitioner.
fn murmur2(data: &[u8]) -> i32 {
    let seed: u32 = 0x9747_b28c;
    let m: u32 = 0x5bd1_e995;
    let len = data.len() as u32;
    let mut h = seed ^ len;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(m);
        k ^= k >> 24;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h as i32
}

fn java_partition(key: &str, partitions: i32) -> i32 {
    (murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions
}

#[test]
fn murmur2_matches_kafkas_reference_values() {
    // Values from Kafka's UtilsTest.testMurmur2.
    assert_eq!(murmur2(b"21"), -973_932_308);
    assert_eq!(murmur2(b"foobar"), -790_332_482);
    assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
    assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
    assert_eq!(
        murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
        -58_897_971
    );
    assert_eq!(murmur2(b"abc"), 479_470_107);
}

#[test]
fn events_are_keyed_by_saga_id_partitioned_like_java_and_carry_traceparent() {
    let kafka = TestKafka::start().expect("kafka");
    let topic = kafka.unique_topic("saga.tracker");
    let partitions = 6;
    kafka.create_topic(&topic, partitions).expect("topic");
    let spool = tempfile::tempdir().expect("spool");
    let sink = KafkaSink::builder(kafka.brokers())
        .topic(&topic)
        .build()
        .expect("sink");
    let tracker = Tracker::builder()
        .service("payment-service")
        .sink(sink)
        .spool_dir(spool.path())
        .build()
        .expect("tracker");
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("test");
    let trace_id = tracer.in_span("charge", |cx| {
        for i in 0..30 {
            tracker
                .record(Transition::new(
                    "OrderSaga",
                    "charge_payment",
                    format!("saga-{i}"),
                    StepStatus::Started,
                ))
                .expect("record");
        }
        cx.span().span_context().trace_id().to_string()
    });
    tracker
        .record(Transition::new(
            "OrderSaga",
            "charge_payment",
            "no-trace",
            StepStatus::Started,
        ))
        .expect("record");
    tracker.flush(T).expect("flush");
    assert_eq!(tracker.stats().delivered, 31);

    let messages = kafka.read_all(&topic, T).expect("read");
    assert_eq!(messages.len(), 31);
    for message in &messages {
        let event = codec::decode(message.payload().expect("payload")).expect("decode");
        let key = std::str::from_utf8(message.key().expect("key")).expect("utf8");
        assert_eq!(key, event.saga_id);
        assert_eq!(
            message.partition(),
            java_partition(key, partitions),
            "partition of {key}"
        );
        let traceparent = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "traceparent"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        if key == "no-trace" {
            assert_eq!(traceparent, None);
            assert_eq!(event.trace_id(), None);
        } else {
            let tp = traceparent.expect("traceparent header");
            assert!(tp.starts_with(&format!("00-{trace_id}-")), "{tp}");
            assert_eq!(event.trace_id(), Some(trace_id.as_str()));
        }
    }
}

#[test]
fn bad_sink_configuration_is_a_clear_error_at_build() {
    let err = KafkaSink::builder("").build().expect_err("no brokers");
    assert!(matches!(err, SinkError::NoBrokers), "{err}");
    let err = KafkaSink::builder("localhost:9092")
        .topic("")
        .build()
        .expect_err("empty topic");
    assert!(matches!(err, SinkError::EmptyTopic), "{err}");
    let err = KafkaSink::builder("localhost:9092")
        .set("no.such.property", "1")
        .build()
        .expect_err("unknown option");
    assert!(matches!(err, SinkError::Config(_)), "{err}");
    assert!(err.to_string().contains("no.such.property"), "{err}");
    let err = KafkaSink::builder("localhost:9092")
        .set("acks", "sometimes")
        .build()
        .expect_err("bad value");
    assert!(err.to_string().contains("acks"), "{err}");
}

#[test]
fn unreachable_brokers_fail_the_connectivity_check_or_spool_at_first_send() {
    let err = KafkaSink::builder("127.0.0.1:1")
        .check_connectivity(Duration::from_millis(500))
        .build()
        .expect_err("unreachable");
    assert!(matches!(err, SinkError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");

    // Without the check the tracker builds; the first send fails, is counted, spooled and explained.
    let spool = tempfile::tempdir().expect("spool");
    let sink = KafkaSink::builder("127.0.0.1:1")
        .message_timeout(Duration::from_millis(500))
        .build()
        .expect("sink");
    let tracker = Tracker::builder()
        .service("svc")
        .sink(sink)
        .spool_dir(spool.path())
        .build()
        .expect("tracker");
    tracker
        .record(Transition::new(
            "OrderSaga",
            "reserve_stock",
            "saga-1",
            StepStatus::Started,
        ))
        .expect("record");
    let _ = tracker.flush(Duration::from_secs(10));
    let stats = tracker.stats();
    assert_eq!(
        (stats.failed, stats.spooled, stats.lost),
        (1, 1, 0),
        "{stats:?}"
    );
    let error = tracker.last_error().expect("an error is kept");
    assert!(error.contains("timed out"), "{error}");
}

/// The nice value in a /proc `stat` line (field 19 of stat(5)).
#[cfg(target_os = "linux")]
fn stat_nice(stat: &str) -> i32 {
    // Fields after "(comm) ": state is field 3.
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[16].parse().expect("nice")
}

/// This process's threads: (thread id, name, nice value) from /proc.
#[cfg(target_os = "linux")]
fn threads() -> Vec<(u32, String, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = entry.expect("task entry").path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let nice = stat_nice(&stat);
        let tid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .expect("tid");
        out.push((tid, comm.trim().to_owned(), nice));
    }
    out
}

#[cfg(target_os = "linux")]
#[test]
fn librdkafkas_threads_run_at_background_priority_unless_turned_off() {
    let kafka = TestKafka::start().expect("kafka");
    let topic = kafka.unique_topic("priority");
    kafka.create_topic(&topic, 1).expect("topic");
    for background in [true, false] {
        let before: Vec<u32> = threads().into_iter().map(|t| t.0).collect();
        let sink = KafkaSink::builder(kafka.brokers())
            .topic(&topic)
            .background_priority(background)
            .check_connectivity(T)
            .build()
            .expect("sink");
        let started: Vec<_> = threads()
            .into_iter()
            .filter(|t| !before.contains(&t.0))
            .collect();
        assert!(
            started.iter().any(|t| t.1.starts_with("rdk:broker")),
            "{started:?}"
        );
        // Relative to the test's own priority (a test run under `nice` starts every thread there).
        let own = stat_nice(&std::fs::read_to_string("/proc/thread-self/stat").expect("own stat"));
        let expected = if background { own.max(10) } else { own };
        for (_, name, nice) in &started {
            assert_eq!(*nice, expected, "{name} (background = {background})");
        }
        drop(sink);
    }
}

#[test]
fn two_trackers_sharing_one_sink_each_count_their_own_deliveries() {
    let kafka = TestKafka::start().expect("kafka");
    let topic = kafka.unique_topic("shared");
    kafka.create_topic(&topic, 2).expect("topic");
    let sink = std::sync::Arc::new(
        KafkaSink::builder(kafka.brokers())
            .topic(&topic)
            .build()
            .expect("sink"),
    );
    let tracker = |service: &str| {
        Tracker::builder()
            .service(service)
            .sink(sink.clone())
            .without_spool()
            .build()
            .expect("tracker")
    };
    let (order, payment) = (tracker("order-service"), tracker("payment-service"));
    for i in 0..20 {
        for (t, n) in [(&order, 1), (&payment, 2)] {
            for _ in 0..n {
                t.record(Transition::new(
                    "OrderSaga",
                    "step",
                    format!("saga-{i}"),
                    StepStatus::Started,
                ))
                .expect("record");
            }
        }
    }
    order.flush(T).expect("flush");
    payment.flush(T).expect("flush");
    assert_eq!((order.stats().recorded, order.stats().delivered), (20, 20));
    assert_eq!(
        (payment.stats().recorded, payment.stats().delivered),
        (40, 40)
    );
    let messages = kafka.read_all(&topic, T).expect("read");
    let from = |service: &str| {
        messages
            .iter()
            .filter(|m| {
                codec::decode(m.payload().expect("payload"))
                    .expect("decode")
                    .service
                    == service
            })
            .count()
    };
    assert_eq!((from("order-service"), from("payment-service")), (20, 40));
}
