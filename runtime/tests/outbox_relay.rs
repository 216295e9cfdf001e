//! The relay on real PostgreSQL and the real Kafka protocol: wakes on NOTIFY, publishes rows committed late and
//! out of order, two relays at once publish every event once, permanent failures are given up with a reason, and
//! retention drops only fully published old partitions.

mod outbox_support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use outbox_support::{TestDb, TestTopic, drain};
use saga_tracker::outbox::{
    RelayConfig, drop_published_partitions, ensure_partitions, record_in_tx_with,
};
use saga_tracker::{StepStatus, Tracker, Transition};
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

fn transition(saga: &str) -> Transition {
    Transition::new("OrderSaga", "reserve_stock", saga, StepStatus::Started)
}

/// Commits `n` events, `per_tx` per transaction.
async fn write_events(pool: &PgPool, tracker: &Tracker, prefix: &str, n: usize, per_tx: usize) {
    let mut written = 0;
    while written < n {
        let mut tx = pool.begin().await.expect("begin");
        for _ in 0..per_tx.min(n - written) {
            record_in_tx_with(
                tracker,
                &mut tx,
                &transition(&format!("{prefix}-{written}")),
                SystemTime::now(),
                None,
            )
            .await
            .expect("written");
            written += 1;
        }
        tx.commit().await.expect("commit");
    }
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_running_relay_wakes_on_notify_not_on_its_poll() {
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    let relay =
        saga_tracker::outbox::Relay::new(db.pool(2).await, kafka.sink()).config(RelayConfig {
            // Far beyond the wait below: only a notification can wake it in time.
            poll_interval: Duration::from_secs(120),
            ..RelayConfig::default()
        });
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        relay
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    // Let it reach its wait (its first round finds nothing).
    tokio::time::sleep(Duration::from_millis(500)).await;
    write_events(&db.pool, &tracker, "woken", 3, 3).await;
    wait_until(
        "the relay published after the NOTIFY",
        Duration::from_secs(20),
        async || db.published().await == 3,
    )
    .await;
    stop.send(()).expect("stop");
    running.await.expect("joined").expect("relay ran");
    assert_eq!(kafka.read().len(), 3);
}

#[tokio::test]
async fn a_row_committed_late_and_out_of_order_is_still_published() {
    // MassTransit #4990-style loss: a reader that advances a "last seen" mark skips a row whose transaction
    // started (and got its time) earlier but committed later. This relay claims by lock and state, not by mark.
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    let relay = kafka.relay(db.pool(2).await, 10);

    let mut slow = db.pool.begin().await.expect("begin slow");
    // created_at = now() = the transaction's start: earlier than everything below.
    record_in_tx_with(
        &tracker,
        &mut slow,
        &transition("slow"),
        SystemTime::now(),
        None,
    )
    .await
    .expect("slow row");
    write_events(&db.pool, &tracker, "fast", 5, 1).await;
    assert_eq!(drain(&relay).await, 5, "the committed rows");
    slow.commit().await.expect("commit slow");
    assert_eq!(drain(&relay).await, 1, "the late row");
    let sagas: Vec<String> = kafka.read().into_iter().map(|m| m.event.saga_id).collect();
    assert_eq!(sagas.len(), 6);
    assert!(sagas.contains(&"slow".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_at_once_publish_every_event_exactly_once() {
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    const N: usize = 4000;
    // Half committed before the relays start, half while they run.
    write_events(&db.pool, &tracker, "before", N / 2, 100).await;
    let mut relays = Vec::new();
    for _ in 0..2 {
        let relay = kafka.relay(db.pool(2).await, 100);
        let pool = db.pool.clone();
        relays.push(tokio::spawn(async move {
            let mut published = 0usize;
            let deadline = Instant::now() + Duration::from_secs(50);
            loop {
                let report = relay.run_once().await.expect("round");
                published += report.published;
                let total: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM saga_tracker_outbox WHERE published_at IS NOT NULL",
                )
                .fetch_one(&pool)
                .await
                .expect("count");
                if total as usize >= N {
                    return published;
                }
                assert!(Instant::now() < deadline, "relays did not finish");
                if report.claimed == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    write_events(&db.pool, &tracker, "during", N / 2, 50).await;
    let mut per_relay = Vec::new();
    for relay in relays {
        per_relay.push(relay.await.expect("relay task"));
    }
    assert_eq!(per_relay.iter().sum::<usize>(), N, "{per_relay:?}");
    assert!(
        per_relay.iter().all(|&n| n > 0),
        "both relays worked: {per_relay:?}"
    );

    let messages = kafka.read();
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for m in &messages {
        *seen.entry(m.event.event_id).or_default() += 1;
    }
    let ids = db.event_ids().await;
    assert_eq!(ids.len(), N);
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "event {id} published exactly once");
    }
    assert_eq!(messages.len(), N);
}

#[tokio::test]
async fn unpublishable_rows_are_given_up_with_a_reason_and_do_not_block_the_rest() {
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    // A hostile writer: an empty key, and a message far over the broker's limit.
    sqlx::query("INSERT INTO saga_tracker_outbox (event_id, saga_id, payload) VALUES ($1, '', '\\xc301'::bytea)")
        .bind(Uuid::now_v7())
        .execute(&db.pool)
        .await
        .expect("row");
    sqlx::query(
        "INSERT INTO saga_tracker_outbox (event_id, saga_id, payload) VALUES ($1, 'huge', $2)",
    )
    .bind(Uuid::now_v7())
    .bind(vec![0xc3u8; 3 * 1024 * 1024])
    .execute(&db.pool)
    .await
    .expect("row");
    write_events(&db.pool, &tracker, "fine", 3, 3).await;
    let relay = kafka.relay(db.pool(2).await, 10);
    let report = relay.run_once().await.expect("round");
    assert_eq!(
        (
            report.claimed,
            report.published,
            report.given_up,
            report.retry
        ),
        (5, 3, 2, 0)
    );
    assert_eq!(
        drain(&relay).await,
        0,
        "given-up rows are not claimed again"
    );
    let given_up: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT saga_id, last_error, attempts FROM saga_tracker_outbox WHERE failed_at IS NOT NULL ORDER BY saga_id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("given up");
    assert_eq!(given_up.len(), 2);
    assert!(given_up[0].1.contains("saga_id"), "{given_up:?}");
    assert!(
        given_up[1].1.contains("MessageSizeTooLarge"),
        "{given_up:?}"
    );
    assert!(given_up.iter().all(|g| g.2 == 1));
    assert_eq!(kafka.read().len(), 3);
}

/// Two relays in their run loop, each with a batch in flight while it claims the next (overlapping rounds):
/// every event is published exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_running_relays_with_overlapping_rounds_publish_every_event_exactly_once() {
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    const N: usize = 6000;
    write_events(&db.pool, &tracker, "before", N / 2, 500).await;
    let mut stops = Vec::new();
    let mut running = Vec::new();
    for _ in 0..2 {
        // Small batches: many rounds, each full one overlapped with the next claim.
        let relay = kafka.relay(db.pool(3).await, 150);
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        running.push(tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }));
    }
    write_events(&db.pool, &tracker, "during", N / 2, 100).await;
    wait_until(
        "both relays published everything",
        Duration::from_secs(60),
        async || db.published().await == N as i64,
    )
    .await;
    for stop in stops {
        let _ = stop.send(());
    }
    for relay in running {
        relay.await.expect("relay task").expect("relay");
    }
    let messages = kafka.read();
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for m in &messages {
        *seen.entry(m.event.event_id).or_default() += 1;
    }
    let ids = db.event_ids().await;
    assert_eq!(ids.len(), N);
    for id in &ids {
        assert_eq!(seen.get(id), Some(&1), "event {id} published exactly once");
    }
    assert_eq!(messages.len(), N);
}

#[tokio::test]
async fn retention_drops_old_partitions_only_when_every_row_is_published() {
    let db = TestDb::new().await;
    assert_eq!(
        ensure_partitions(&db.pool, 7).await.expect("ahead"),
        0,
        "the migration made them"
    );
    assert_eq!(ensure_partitions(&db.pool, 9).await.expect("ahead"), 2);
    let pool = &db.pool;
    let old_day = async |days: i32| old_partition(pool, days).await;
    let published_old = old_day(20).await;
    let pending_old = old_day(21).await;
    let recent = old_day(3).await;
    sqlx::query(
        "UPDATE saga_tracker_outbox SET published_at = now() WHERE tableoid::regclass::text <> $1",
    )
    .bind(&pending_old)
    .execute(&db.pool)
    .await
    .expect("publish");
    let dropped = drop_published_partitions(&db.pool, 7)
        .await
        .expect("retention");
    assert_eq!(dropped, std::slice::from_ref(&published_old));
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'saga_tracker_outbox'::regclass",
    )
    .fetch_all(&db.pool)
    .await
    .expect("partitions");
    assert!(!left.contains(&published_old));
    assert!(left.contains(&pending_old), "kept: a row is not published");
    assert!(left.contains(&recent), "kept: within retention");
    let err = drop_published_partitions(&db.pool, 0)
        .await
        .expect_err("0 days");
    assert!(err.to_string().contains("keep_days must be >= 1"), "{err}");
}

/// Creates the partition of the UTC day `days` ago with one unpublished row in it; returns its name.
async fn old_partition(pool: &PgPool, days: i32) -> String {
    let (name, from, to): (String, String, String) = sqlx::query_as(
        "SELECT 'saga_tracker_outbox_p' || to_char(d, 'YYYYMMDD'), d::text, (d + 1)::text \
         FROM (SELECT (now() AT TIME ZONE 'UTC')::date - $1 AS d) x",
    )
    .bind(days)
    .fetch_one(pool)
    .await
    .expect("day");
    sqlx::query(&format!(
        "CREATE TABLE {name} PARTITION OF saga_tracker_outbox \
         FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')"
    ))
    .execute(pool)
    .await
    .expect("old partition");
    sqlx::query(&format!(
        "INSERT INTO saga_tracker_outbox (event_id, created_at, saga_id, payload) \
         VALUES ($1, '{from} 12:00:00+00', 's', '\\xc301'::bytea)"
    ))
    .bind(Uuid::now_v7())
    .execute(pool)
    .await
    .expect("old row");
    name
}

/// The relay's maintenance applies its configured retention: with 14 days, published rows 10 days old are
/// kept and those 16 days old dropped with their partition; with 7, the 10-day-old ones go too.
#[tokio::test]
async fn the_relay_keeps_published_rows_for_its_configured_retention_then_drops_their_partitions() {
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let ten = old_partition(&db.pool, 10).await;
    let sixteen = old_partition(&db.pool, 16).await;
    let partitions = async || -> Vec<String> {
        sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'saga_tracker_outbox'::regclass",
        )
        .fetch_all(&db.pool)
        .await
        .expect("partitions")
    };
    let relay = |days: u32| {
        saga_tracker::outbox::Relay::new(db.pool.clone(), kafka.sink()).config(RelayConfig {
            retention_days: Some(days),
            ..RelayConfig::default()
        })
    };
    // Not published yet: nothing is dropped, whatever its age.
    relay(7).maintain().await.expect("maintenance");
    assert!(partitions().await.contains(&sixteen));
    assert_eq!(
        drain(&relay(14)).await,
        2,
        "the relay publishes the old rows"
    );

    relay(14).maintain().await.expect("maintenance");
    let left = partitions().await;
    assert!(
        left.contains(&ten),
        "10 days old: kept with 14 days' retention"
    );
    assert!(!left.contains(&sixteen), "16 days old: dropped");
    let published: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {ten} WHERE published_at IS NOT NULL"
    ))
    .fetch_one(&db.pool)
    .await
    .expect("count");
    assert_eq!(published, 1, "published rows are kept until then");

    relay(7).maintain().await.expect("maintenance");
    assert!(
        !partitions().await.contains(&ten),
        "dropped with 7 days' retention"
    );
}
