//! Migration 0004 partitions an existing `saga_events` by day, moving its rows, keeping its indexes and the
//! dedupe by event id; partitions are split out of the default partition on demand.

mod common;

use std::borrow::Cow;

use chrono::{Days, Utc};
use common::{SagaBuilder, TestDb};
use saga_tracker_core::StepStatus::*;
use saga_tracker_service::Store;
use saga_tracker_service::db::{IncomingEvent, MIGRATOR};
use saga_tracker_service::ops::{day, partitions};
use sqlx::migrate::Migrator;

#[tokio::test(flavor = "multi_thread")]
async fn migration_moves_existing_rows_and_keeps_dedupe() {
    let db = TestDb::new();
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("connect");
    sqlx::query(&format!("CREATE SCHEMA \"{}\"", db.schema))
        .execute(&admin)
        .await
        .expect("schema");
    let options: sqlx::postgres::PgConnectOptions = db.url.parse().expect("url");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.options([("search_path", db.schema.as_str())]))
        .await
        .expect("connect");
    // the schema as the migrations before 0004 leave it
    let before = Migrator {
        migrations: Cow::Owned(MIGRATOR.iter().filter(|m| m.version < 4).cloned().collect()),
        ..Migrator::DEFAULT
    };
    before.run(&pool).await.expect("migrations < 4");

    let secs_yesterday = (Utc::now().timestamp_micros() - common::T0) / 1_000_000 - 86_400;
    let old = SagaBuilder::new("old", "OrderSaga", 0)
        .ev("order-service", "reserve_stock", Started, 1)
        .events;
    let recent = SagaBuilder::new("recent", "OrderSaga", secs_yesterday)
        .ev("order-service", "reserve_stock", Started, 1)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .events;
    let all: Vec<IncomingEvent> = old
        .iter()
        .chain(&recent)
        .enumerate()
        .map(|(i, e)| IncomingEvent {
            event: e.clone(),
            topic: "saga.tracker".into(),
            partition: 0,
            offset: i as i64,
        })
        .collect();
    // rows as an older tracker stored them (Store::connect would migrate to the latest)
    for e in &all {
        sqlx::query(
            "INSERT INTO saga_events (event_id, idempotency_key, saga_id, saga_type, step, status, attempt,
                 service, recorded_at, metadata, kafka_topic, kafka_partition, kafka_offset)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '{}', $10, $11, $12)",
        )
        .bind(e.event.event_id)
        .bind(&e.event.idempotency_key)
        .bind(&e.event.saga_id)
        .bind(&e.event.saga_type)
        .bind(&e.event.step)
        .bind(e.event.status.as_str())
        .bind(e.event.attempt)
        .bind(&e.event.service)
        .bind(chrono::DateTime::<Utc>::from_timestamp_micros(e.event.recorded_at).expect("time"))
        .bind(&e.topic)
        .bind(e.partition)
        .bind(e.offset)
        .execute(&pool)
        .await
        .expect("insert");
    }
    drop(pool);

    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("migrates to 0004");
    let pool = store.pool();
    let partitioned: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'saga_events'::regclass)",
    )
    .fetch_one(pool)
    .await
    .expect("query");
    assert!(partitioned);
    assert_eq!(store.event_count().await.expect("count"), 3);
    let yesterday = Utc::now().date_naive() - Days::new(1);
    let in_day: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\"",
        day::partition_name(yesterday)
    ))
    .fetch_one(pool)
    .await
    .expect("count");
    assert_eq!(in_day, 2, "recent rows in their day partition");
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_events_default")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(in_default, 1, "2024 is too old for a partition of its own");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'saga_events' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("indexes");
    for wanted in ["saga_events_recorded_at", "saga_events_saga_id_recorded_at"] {
        assert!(
            indexes.iter().any(|i| i == wanted),
            "{wanted} in {indexes:?}"
        );
    }
    for ahead in 0..=7 {
        let d = Utc::now().date_naive() + Days::new(ahead);
        assert!(
            partitions::day_partitions(pool)
                .await
                .expect("days")
                .contains(&d),
            "{d} created ahead"
        );
    }

    // the same events again: all duplicates
    let new = store.write_batch(&all).await.expect("write");
    assert!(new.is_empty(), "{new:?}");
    assert_eq!(store.event_count().await.expect("count"), 3);

    // splitting the old day out of the default partition
    let old_day = chrono::NaiveDate::from_ymd_opt(2024, 11, 24).expect("day");
    assert!(partitions::ensure(pool, old_day).await.expect("ensure"));
    assert!(
        !partitions::ensure(pool, old_day)
            .await
            .expect("ensure again")
    );
    let in_default: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_events_default")
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(in_default, 0);
    assert_eq!(store.event_count().await.expect("count"), 3);
    let new = store.write_batch(&all[..1]).await.expect("write");
    assert!(new.is_empty(), "still a duplicate in its new partition");
    // a new event: the saga's derived row comes from its events in every partition
    let more = SagaBuilder::new("old", "OrderSaga", 5)
        .ev("order-service", "reserve_stock", Succeeded, 1)
        .events;
    let new = store
        .write_batch(&[IncomingEvent {
            event: more[0].clone(),
            topic: "saga.tracker".into(),
            partition: 0,
            offset: 9,
        }])
        .await
        .expect("write");
    assert_eq!(new, vec![0]);
    let saga = store.saga("old").await.expect("query").expect("saga");
    assert_eq!((saga.event_count, saga.status.as_str()), (2, "SUCCEEDED"));
}
