//! No silent loss: all brokers go down mid-stream, recording goes on, brokers come back, the spool is replayed,
//! and the topic holds every recorded event exactly once (by eventId).
//!
//! Runs on librdkafka's mock cluster; with `SAGA_TRACKER_TEST_BROKERS` set, the outage is an unreachable
//! address instead (a real broker cannot be stopped from here) and the replay goes to the real broker.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use saga_tracker::testing::TestKafka;
use saga_tracker::{KafkaSink, StepStatus, Tracker, TrackerStats, Transition, codec};
use uuid::Uuid;

const FLUSH: Duration = Duration::from_secs(30);

fn record_batch(tracker: &Tracker, prefix: &str, sagas: usize) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for i in 0..sagas {
        let saga_id = format!("{prefix}-{i}");
        for status in [StepStatus::Started, StepStatus::Succeeded] {
            tracker
                .record(Transition::new(
                    "OrderSaga",
                    "reserve_stock",
                    saga_id.as_str(),
                    status,
                ))
                .expect("record");
            keys.insert(format!("{saga_id}:reserve_stock:{status}:1"));
        }
    }
    keys
}

fn kafka_tracker(brokers: &str, topic: &str, spool: &std::path::Path) -> Tracker {
    let sink = KafkaSink::builder(brokers)
        .topic(topic)
        .message_timeout(Duration::from_secs(3))
        .set("retry.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "200")
        .build()
        .expect("kafka sink");
    Tracker::builder()
        .service("order-service")
        .sink(sink)
        .spool_dir(spool)
        .build()
        .expect("tracker")
}

/// Reads the topic and checks it holds exactly `expected` idempotency keys, each once.
fn assert_topic_holds_exactly(kafka: &TestKafka, topic: &str, expected: &BTreeSet<String>) {
    let messages = kafka
        .read_all(topic, Duration::from_secs(60))
        .expect("read topic");
    let mut by_event: BTreeMap<Uuid, usize> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for message in &messages {
        let payload = rdkafka::Message::payload(message).expect("payload");
        let event = codec::decode(payload).expect("every message decodes");
        assert_eq!(
            rdkafka::Message::key(message),
            Some(event.saga_id.as_bytes()),
            "key = sagaId"
        );
        *by_event.entry(event.event_id).or_default() += 1;
        keys.insert(event.idempotency_key);
    }
    let duplicates: Vec<_> = by_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "duplicated event ids: {duplicates:?}"
    );
    assert_eq!(
        messages.len(),
        expected.len(),
        "one message per recorded event"
    );
    assert_eq!(&keys, expected);
}

#[test]
fn brokers_down_mid_stream_then_replay_delivers_every_event_exactly_once() {
    let kafka = TestKafka::start().expect("kafka");
    let topic = kafka.unique_topic("saga.tracker");
    kafka.create_topic(&topic, 3).expect("topic");
    let spool = tempfile::tempdir().expect("spool dir");
    let mut expected = BTreeSet::new();

    if kafka.is_mock() {
        let tracker = kafka_tracker(kafka.brokers(), &topic, spool.path());
        expected.extend(record_batch(&tracker, "before", 50));
        tracker.flush(FLUSH).expect("flush before the outage");
        assert_eq!(tracker.stats().delivered, 100);

        kafka.all_brokers_down().expect("brokers down");
        expected.extend(record_batch(&tracker, "during", 40));
        // Messages time out after 3 s; the flush waits for their (failed) delivery reports.
        let _ = tracker.flush(FLUSH);
        let stats = tracker.stats();
        assert_eq!(stats.failed, 80, "{stats:?}");
        assert_eq!(stats.spooled, 80, "{stats:?}");
        assert_eq!(tracker.spooled_pending().expect("list spool"), 80);
        assert!(
            tracker.last_error().is_some_and(|e| e.contains("failed")),
            "{:?}",
            tracker.last_error()
        );

        kafka.all_brokers_up().expect("brokers up");
        expected.extend(record_batch(&tracker, "after", 30));
        let report = tracker.replay_spool().expect("replay");
        assert_eq!(report.resent, 80);
        tracker.flush(FLUSH).expect("flush after replay");
        let stats = tracker.stats();
        assert_eq!(
            stats,
            TrackerStats {
                recorded: 240,
                delivered: 240,
                failed: 80,
                spooled: 80,
                replayed: 80,
                lost: 0,
                rejected: 0,
                truncated: 0,
            },
        );
        assert_eq!(
            tracker.spooled_pending().expect("list spool"),
            0,
            "replayed files are removed"
        );
    } else {
        // A real broker: the outage is an address nobody listens on; a restarted tracker replays the spool.
        let down = kafka_tracker("127.0.0.1:1", &topic, spool.path());
        expected.extend(record_batch(&down, "during", 40));
        let _ = down.flush(FLUSH);
        assert_eq!(down.stats().spooled, 80);
        drop(down);
        let tracker = kafka_tracker(kafka.brokers(), &topic, spool.path());
        expected.extend(record_batch(&tracker, "after", 30));
        assert_eq!(tracker.replay_spool().expect("replay").resent, 80);
        tracker.flush(FLUSH).expect("flush");
        assert_eq!(tracker.stats().replayed, 80);
        assert_eq!(tracker.spooled_pending().expect("list"), 0);
    }
    assert_topic_holds_exactly(&kafka, &topic, &expected);
}

#[test]
fn replaying_twice_does_not_duplicate() {
    let kafka = TestKafka::start().expect("kafka");
    let topic = kafka.unique_topic("saga.tracker");
    kafka.create_topic(&topic, 2).expect("topic");
    let spool = tempfile::tempdir().expect("spool dir");
    let mut expected = BTreeSet::new();
    {
        let down = kafka_tracker("127.0.0.1:1", &topic, spool.path());
        expected.extend(record_batch(&down, "s", 5));
        let _ = down.flush(FLUSH);
        assert_eq!(down.stats().spooled, 10);
    }
    let tracker = kafka_tracker(kafka.brokers(), &topic, spool.path());
    let first = tracker.replay_spool().expect("replay");
    let second = tracker
        .replay_spool()
        .expect("replay again while in flight");
    assert_eq!(first.resent + second.resent, 10, "{first:?} {second:?}");
    tracker.flush(FLUSH).expect("flush");
    assert_eq!(tracker.replay_spool().expect("nothing left").resent, 0);
    assert_topic_holds_exactly(&kafka, &topic, &expected);
}
