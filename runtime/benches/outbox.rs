//! Events/s through the outbox (rows already committed → relay → acknowledged and marked published, the relay's
//! overlapping rounds as `Relay::run` does them) against the direct KafkaSink (the same encoded events handed to
//! the sink, every acknowledgement awaited), same run, same in-process broker. Both sides start from encoded
//! events (the outbox row holds the encoded payload, written by the business transaction) and end when the
//! broker acknowledged the last one; the relay side also reads the rows and marks them published. Needs PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test).
//! `scripts/bench-report` prints `TARGET outbox_relay_vs_direct` and the relay's events/s.
#![allow(missing_docs)]

use std::str::FromStr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use saga_tracker::outbox::{Relay, RelayConfig};
use saga_tracker::sink::{Delivery, Envelope, Sink};
use saga_tracker::testing::{TestKafka, sample_event};
use saga_tracker::{KafkaSink, codec};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Events per iteration.
const EVENTS: usize = 5000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kafka = TestKafka::start_with(1).expect("kafka");
    let topic = kafka.unique_topic("saga.tracker.bench");
    kafka.create_topic(&topic, 3).expect("topic");
    let sink = || {
        KafkaSink::builder(kafka.brokers())
            .topic(&topic)
            .build()
            .expect("sink")
    };
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("bench_outbox_{}", uuid::Uuid::now_v7().simple());
    let pool: PgPool = rt.block_on(async {
        let admin = PgPool::connect(&url).await.expect("PostgreSQL");
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&admin)
            .await
            .expect("schema");
        let options = PgConnectOptions::from_str(&url)
            .expect("url")
            .options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .expect("pool");
        saga_tracker::outbox::migrate(&pool).await.expect("migrate");
        pool
    });
    let payload = codec::encode(&sample_event());
    let relay = Relay::new(pool.clone(), sink()).config(RelayConfig {
        batch_size: 1000,
        ..RelayConfig::default()
    });
    let direct = sink();

    let mut group = c.benchmark_group("outbox");
    group.sample_size(10);
    group.bench_function("relay", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(async {
                    // Time-ordered ids, like the events' (UUIDv7).
                    let ids: Vec<uuid::Uuid> = (0..EVENTS).map(|_| uuid::Uuid::now_v7()).collect();
                    sqlx::query(
                        "INSERT INTO saga_tracker_outbox (event_id, saga_id, payload) \
                         SELECT id, 'saga-' || i, $1 FROM unnest($2::uuid[]) WITH ORDINALITY AS t(id, i)",
                    )
                    .bind(&payload)
                    .bind(&ids)
                    .execute(&pool)
                    .await
                    .expect("rows");
                    let start = Instant::now();
                    let report = relay.drain().await.expect("drain");
                    total += start.elapsed();
                    assert_eq!(report.published, EVENTS);
                });
            }
            total
        })
    });
    group.bench_function("direct_sink", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (tx, rx) = std::sync::mpsc::channel();
                let start = Instant::now();
                for i in 0..EVENTS {
                    let tx = tx.clone();
                    let key = format!("saga-{i}");
                    direct.send(
                        Envelope {
                            key: &key,
                            payload: &payload,
                            event_id: uuid::Uuid::nil(),
                            recorded_at: 0,
                            traceparent: None,
                        },
                        Delivery::callback(move |r| {
                            let _ = tx.send(r.is_ok());
                        }),
                    );
                }
                drop(tx);
                assert_eq!(rx.iter().filter(|ok| *ok).count(), EVENTS);
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
    rt.block_on(async {
        let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&pool)
            .await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
