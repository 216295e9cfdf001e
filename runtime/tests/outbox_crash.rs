//! A relay killed with SIGKILL mid-batch (a child process) and restarted: every committed event reaches the
//! topic; the only duplicates are re-sends of the batch that was in flight, with the same eventId and bytes.
//!
//! The child is this test binary, re-run with `--ignored --exact relay_child_process` and the environment below.

mod outbox_support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use outbox_support::{TestDb, TestTopic};
use saga_tracker::outbox::{Relay, RelayConfig, record_in_tx_with};
use saga_tracker::{KafkaSink, StepStatus, Transition};
use uuid::Uuid;

const CHILD_ENV: &str = "SAGA_TRACKER_OUTBOX_CHILD";
const BATCH: u32 = 200;

/// The relay process: `SAGA_TRACKER_OUTBOX_CHILD=<database url> <schema> <brokers> <topic>`.
#[test]
#[ignore = "the relay child process of relay_killed_mid_batch_loses_nothing (run by it)"]
fn relay_child_process() {
    let spec = std::env::var(CHILD_ENV).expect("run by relay_killed_mid_batch_loses_nothing");
    let [url, schema, brokers, topic]: [&str; 4] = spec
        .split(' ')
        .collect::<Vec<_>>()
        .try_into()
        .expect("four fields");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pool = outbox_support::pool_in(url, schema, 2).await;
        let sink = KafkaSink::builder(brokers)
            .topic(topic)
            .message_timeout(Duration::from_secs(20))
            .build()
            .expect("sink");
        let relay = Relay::new(pool, sink).config(RelayConfig {
            batch_size: BATCH,
            poll_interval: Duration::from_millis(100),
            ..RelayConfig::default()
        });
        // Until killed.
        relay.run(std::future::pending()).await.expect("relay");
    });
}

fn spawn_relay(db: &TestDb, kafka: &TestTopic) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "relay_child_process", "--nocapture"])
        .env(
            CHILD_ENV,
            format!(
                "{} {} {} {}",
                db.url,
                db.schema,
                kafka.brokers(),
                kafka.topic
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the relay child")
}

#[tokio::test]
async fn relay_killed_mid_batch_loses_nothing() {
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    const N: usize = 6000;
    let mut tx = db.pool.begin().await.expect("begin");
    for i in 0..N {
        let t = Transition::new(
            "OrderSaga",
            "reserve_stock",
            format!("saga-{i}"),
            StepStatus::Started,
        );
        record_in_tx_with(&tracker, &mut tx, &t, SystemTime::now(), None)
            .await
            .expect("written");
    }
    tx.commit().await.expect("commit");

    // Kill the first relay once it has published part of the table (it publishes batch after batch).
    let mut first = spawn_relay(&db, &kafka);
    let deadline = Instant::now() + Duration::from_secs(40);
    let at_kill = loop {
        let published = db.published().await as usize;
        if published >= BATCH as usize {
            first.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
            break published;
        }
        assert!(Instant::now() < deadline, "the relay published nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let status = first.wait().expect("reaped");
    assert!(!status.success(), "killed, not finished: {status:?}");
    let after_kill = db.published().await as usize;
    assert!(
        after_kill < N,
        "killed with work left ({after_kill} of {N} published)"
    );
    assert!(after_kill >= at_kill);

    let mut second = spawn_relay(&db, &kafka);
    let deadline = Instant::now() + Duration::from_secs(40);
    while (db.published().await as usize) < N {
        assert!(
            Instant::now() < deadline,
            "the restarted relay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.kill().expect("stop the second relay");
    second.wait().expect("reaped");

    let messages = kafka.read();
    let mut by_id: HashMap<Uuid, Vec<&[u8]>> = HashMap::new();
    for m in &messages {
        by_id.entry(m.event.event_id).or_default().push(&m.payload);
    }
    let ids = db.event_ids().await;
    assert_eq!(ids.len(), N);
    for id in &ids {
        let copies = by_id.get(id).unwrap_or_else(|| panic!("event {id} lost"));
        assert!(
            copies.iter().all(|c| c == &copies[0]),
            "a duplicate of {id} differs"
        );
    }
    assert_eq!(
        by_id.len(),
        N,
        "nothing on the topic but the committed events"
    );
    let duplicates = messages.len() - N;
    // At most the batch in flight when the relay died was sent again (the first relay may also have had
    // librdkafka retries; those are deduplicated by the idempotent producer).
    assert!(
        duplicates <= BATCH as usize,
        "{duplicates} duplicates: more than the batch in flight"
    );
    eprintln!("killed after {after_kill} of {N} published; {duplicates} duplicates (same eventId)");
}
