//! A producing process SIGKILLed while the broker is down: what it spooled before the kill is replayed by the
//! next process on the same spool directory, 0 lost, 0 duplicated. The producer is this test binary re-run as a
//! child process (the ignored test below).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use saga_tracker::testing::TestKafka;
use saga_tracker::{KafkaSink, StepStatus, Tracker, Transition, codec};

const CHILD_ENV: &str = "SAGA_TRACKER_CRASH_CHILD_SPOOL";
const EVENTS: usize = 40;

/// A tracker whose undelivered events are spooled after `message_timeout`.
fn tracker(
    brokers: &str,
    topic: &str,
    spool: &std::path::Path,
    message_timeout: Duration,
) -> Tracker {
    let sink = KafkaSink::builder(brokers)
        .topic(topic)
        .message_timeout(message_timeout)
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

/// The child: records with no broker reachable, reports what it spooled, then waits to be killed.
#[test]
#[ignore = "run as a child process by sigkilled_producer_spool_is_replayed_after_restart"]
fn child_records_with_the_broker_down_then_waits() {
    let Some(spool) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // Short: the broker is down, every event is spooled after a second.
    let t = tracker(
        "127.0.0.1:9",
        "saga.tracker",
        std::path::Path::new(&spool),
        Duration::from_secs(1),
    );
    for i in 0..EVENTS {
        t.record(Transition::new(
            "OrderSaga",
            "reserve_stock",
            format!("spooled-{i}").as_str(),
            StepStatus::Started,
        ))
        .expect("record");
    }
    t.flush(Duration::from_secs(30))
        .expect("flush: delivered or spooled");
    println!("SPOOLED {}", t.stats().spooled);
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn sigkilled_producer_spool_is_replayed_after_restart() {
    let spool = tempfile::tempdir().expect("spool dir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_records_with_the_broker_down_then_waits",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, spool.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child");
    let stdout = child.stdout.take().expect("stdout");
    let spooled = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("SPOOLED ")
                .and_then(|n| n.parse::<usize>().ok())
        });
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    child.wait().expect("reaped");
    assert_eq!(
        spooled,
        Some(EVENTS),
        "the child spooled every event before the kill"
    );

    let kafka = TestKafka::start().expect("kafka");
    let topic = kafka.unique_topic("saga.tracker");
    kafka.create_topic(&topic, 3).expect("topic");
    // Long: on a loaded machine a replayed event must not time out (its file would stay in the spool).
    let t = tracker(
        kafka.brokers(),
        &topic,
        spool.path(),
        Duration::from_secs(30),
    );
    let report = t.replay_spool().expect("replay");
    assert_eq!(report.resent, EVENTS);
    t.flush(Duration::from_secs(30)).expect("flush");
    assert_eq!(t.spooled_pending().expect("spool"), 0);
    let messages = kafka
        .read_all(&topic, Duration::from_secs(60))
        .expect("read topic");
    let ids: BTreeSet<_> = messages
        .iter()
        .map(|m| {
            codec::decode(rdkafka::Message::payload(m).expect("payload"))
                .expect("decodes")
                .event_id
        })
        .collect();
    assert_eq!(messages.len(), EVENTS, "0 lost, 0 duplicated");
    assert_eq!(ids.len(), EVENTS);
}
