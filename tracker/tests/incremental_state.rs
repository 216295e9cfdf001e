//! Issue 20: the derived state is kept incrementally (a per-saga summary merged with each batch's new events)
//! and must equal the full recompute from all of a saga's stored events — for random event sets written in random
//! batch splits and orders, with duplicates and out-of-order times, on real PostgreSQL. Also: the migration's
//! backfill builds the same summaries, a missing summary is rebuilt, and the per-saga cap.
#![allow(missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::TestDb;
use saga_tracker_core::{SagaEvent, StepStatus};
use saga_tracker_service::Store;
use saga_tracker_service::db::state::{self, DerivedSaga, EventFacts};
use saga_tracker_service::db::summary::Summary;
use saga_tracker_service::db::{IncomingEvent, SagaRow};
use sqlx::Row;
use uuid::Uuid;

/// xorshift64*: deterministic, so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const T0: i64 = 1_732_406_400_000_000;
const STEPS: [&str; 4] = ["reserve", "charge", "ship", "notify"];

fn random_event(rng: &mut Rng, saga: &str) -> SagaEvent {
    let step = rng.below(4) as usize;
    let status = StepStatus::ALL[rng.below(7) as usize];
    let attempt = 1 + rng.below(2) as i32;
    let v2 = rng.chance(50);
    SagaEvent {
        event_id: Uuid::from_u64_pair(rng.next(), rng.next()),
        idempotency_key: SagaEvent::idempotency_key_for(saga, STEPS[step], status, attempt),
        saga_id: saga.to_owned(),
        saga_type: ["OrderSaga", "Other"][rng.below(2) as usize].to_owned(),
        step: STEPS[step].to_owned(),
        status,
        attempt,
        order_id: rng.chance(20).then(|| format!("order-{}", rng.below(3))),
        service: format!("svc-{}", rng.below(3)),
        // a small range of times: ties and out-of-order arrival are common
        recorded_at: T0 + rng.below(30) as i64 * 1_000,
        duration_micros: None,
        error: None,
        metadata: BTreeMap::new(),
        // mostly the declared position of the step, sometimes a conflicting one
        step_index: v2.then(|| {
            if rng.chance(85) {
                step as i32
            } else {
                rng.below(4) as i32
            }
        }),
        step_count: v2.then(|| 3 + rng.below(2) as i32),
        compensable: v2.then(|| step < 2 || rng.chance(10)),
        cause_idempotency_key: None,
    }
}

fn incoming(e: &SagaEvent, offset: i64) -> IncomingEvent {
    IncomingEvent {
        event: e.clone(),
        topic: "saga.tracker".into(),
        partition: 0,
        offset,
    }
}

fn facts(e: &SagaEvent) -> EventFacts {
    EventFacts {
        step_index: e.step_index,
        step_count: e.step_count,
        compensable: e.compensable,
        event_id: e.event_id,
        saga_type: e.saga_type.clone(),
        step: e.step.clone(),
        status: e.status,
        attempt: e.attempt,
        order_id: e.order_id.clone(),
        service: e.service.clone(),
        recorded_at: chrono::DateTime::from_timestamp_micros(e.recorded_at).expect("in range"),
    }
}

/// The saga row's derived fields in the shape `derive` returns.
fn derived_of(row: &SagaRow) -> DerivedSaga {
    DerivedSaga {
        saga_type: row.saga_type.clone(),
        status: row.status,
        order_id: row.order_id.clone(),
        started_at: row.started_at,
        updated_at: row.updated_at,
        failed_step: row.failed_step.clone(),
        pending_compensations: row.pending_compensations.clone(),
        steps: row.steps.clone(),
        services: row.services.clone(),
        event_count: row.event_count as usize,
    }
}

/// The full recompute: `derive` over every stored event of the saga.
async fn full_recompute(store: &Store, saga: &str) -> DerivedSaga {
    let rows = sqlx::query(
        "SELECT event_id, saga_type, step, status, attempt, order_id, service, recorded_at, step_index,
             step_count, compensable FROM saga_events WHERE saga_id = $1",
    )
    .bind(saga)
    .fetch_all(store.pool())
    .await
    .expect("events");
    let events: Vec<EventFacts> = rows
        .iter()
        .map(|r| EventFacts {
            event_id: r.get("event_id"),
            saga_type: r.get("saga_type"),
            step: r.get("step"),
            status: state::parse_status(r.get("status")),
            attempt: r.get("attempt"),
            order_id: r.get("order_id"),
            service: r.get("service"),
            recorded_at: r.get("recorded_at"),
            step_index: r.get("step_index"),
            step_count: r.get("step_count"),
            compensable: r.get("compensable"),
        })
        .collect();
    state::derive(&events).expect("stored events")
}

async fn summaries(store: &Store) -> BTreeMap<String, Summary> {
    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT saga_id, summary FROM saga_summaries")
            .fetch_all(store.pool())
            .await
            .expect("summaries");
    rows.into_iter()
        .map(|(id, v)| (id, serde_json::from_value(v).expect("a summary")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_state_equals_the_full_recompute() {
    let db = TestDb::new();
    let store = Store::connect(&db.url, Some(&db.schema), 4)
        .await
        .expect("store");
    let mut rng = Rng(0x5eed_0020_0002);
    let mut all_sagas = BTreeSet::new();
    for round in 0..60 {
        let sagas: Vec<String> = (0..1 + rng.below(4))
            .map(|j| format!("r{round}-saga-{j}"))
            .collect();
        let mut events: Vec<SagaEvent> = (0..1 + rng.below(40))
            .map(|_| {
                let saga = &sagas[rng.below(sagas.len() as u64) as usize];
                random_event(&mut rng, saga)
            })
            .collect();
        let distinct = events.clone();
        // duplicates: the same event again (a producer retry, a redelivery), in the same or a later batch
        for _ in 0..rng.below(8) {
            let e = events[rng.below(events.len() as u64) as usize].clone();
            events.push(e);
        }
        for i in (1..events.len()).rev() {
            events.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut written = 0;
        while written < events.len() {
            let n = 1 + rng.below((events.len() - written) as u64) as usize;
            let batch: Vec<IncomingEvent> = events[written..written + n]
                .iter()
                .enumerate()
                .map(|(i, e)| incoming(e, (written + i) as i64))
                .collect();
            store.write_batch(&batch).await.expect("write");
            written += n;
        }
        for saga in &sagas {
            let expected: Vec<EventFacts> = distinct
                .iter()
                .filter(|e| &e.saga_id == saga)
                .map(facts)
                .collect();
            let Some(expected) = state::derive(&expected) else {
                continue;
            };
            let row = store.saga(saga).await.expect("query").expect("a saga row");
            assert_eq!(derived_of(&row), expected, "round {round}, {saga}");
            assert_eq!(
                full_recompute(&store, saga).await,
                expected,
                "round {round}, {saga}"
            );
            all_sagas.insert(saga.clone());
        }
    }

    // The migration's backfill builds the same summaries from the events.
    let before = summaries(&store).await;
    assert_eq!(before.keys().cloned().collect::<BTreeSet<_>>(), all_sagas);
    let migration = include_str!("../migrations/0007_saga_summaries.sql");
    let backfill = &migration[migration.find("-- Backfill").expect("the backfill")..];
    sqlx::query("DELETE FROM saga_summaries")
        .execute(store.pool())
        .await
        .expect("delete");
    sqlx::raw_sql(backfill)
        .execute(store.pool())
        .await
        .expect("backfill");
    assert_eq!(summaries(&store).await, before);

    // A missing summary is rebuilt from the events before the next batch merges into it.
    let saga = all_sagas.first().expect("a saga").clone();
    sqlx::query("DELETE FROM saga_summaries WHERE saga_id = $1")
        .bind(&saga)
        .execute(store.pool())
        .await
        .expect("delete");
    let late = random_event(&mut rng, &saga);
    store
        .write_batch(&[incoming(&late, 0)])
        .await
        .expect("write");
    let row = store.saga(&saga).await.expect("query").expect("row");
    assert_eq!(derived_of(&row), full_recompute(&store, &saga).await);
    assert_eq!(summaries(&store).await.len(), all_sagas.len());

    // A summary left without its saga row (a hand-made delete; `archive` deletes both) is not read: the saga's
    // next event rebuilds the summary from the stored events.
    sqlx::query("DELETE FROM sagas WHERE saga_id = $1")
        .bind(&saga)
        .execute(store.pool())
        .await
        .expect("delete");
    let later = random_event(&mut rng, &saga);
    store
        .write_batch(&[incoming(&later, 1)])
        .await
        .expect("write");
    let row = store.saga(&saga).await.expect("query").expect("row");
    assert_eq!(derived_of(&row), full_recompute(&store, &saga).await);
    assert_eq!(summaries(&store).await.len(), all_sagas.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saga_at_the_cap_takes_no_more_events() {
    let db = TestDb::new();
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store")
        .with_max_events_per_saga(Some(5));
    let mut rng = Rng(7);
    let long: Vec<SagaEvent> = (0..8).map(|_| random_event(&mut rng, "long")).collect();
    let short = random_event(&mut rng, "short");
    // 3 events, then 5 more in one batch with another saga's event and a duplicate of a stored one
    let first: Vec<IncomingEvent> = long[..3].iter().map(|e| incoming(e, 0)).collect();
    let w = store.write(&first).await.expect("write");
    assert_eq!((w.new.len(), w.too_long.len()), (3, 0));
    let mut second: Vec<IncomingEvent> = long[3..].iter().map(|e| incoming(e, 1)).collect();
    second.insert(0, incoming(&long[0], 1));
    second.push(incoming(&short, 1));
    let w = store.write(&second).await.expect("write");
    // index 0 is a duplicate, 1 and 2 fill the saga up to 5, 3..=5 are over the cap, 6 is another saga
    assert_eq!(w.new, vec![1, 2, 6]);
    assert_eq!(w.too_long, vec![3, 4, 5]);
    let row = store.saga("long").await.expect("query").expect("row");
    assert_eq!(row.event_count, 5);
    assert_eq!(derived_of(&row), full_recompute(&store, "long").await);
    // a re-delivery of a stored event of a saga at the cap is a duplicate, not over the cap
    let w = store
        .write(&[incoming(&long[4], 2), incoming(&long[6], 2)])
        .await
        .expect("write");
    assert_eq!((w.new, w.too_long), (vec![], vec![1]));
    // no cap: everything is stored
    let uncapped = store.clone().with_max_events_per_saga(None);
    let w = uncapped
        .write(&[incoming(&long[6], 3), incoming(&long[7], 3)])
        .await
        .expect("write");
    assert_eq!((w.new, w.too_long), (vec![0, 1], vec![]));
    assert_eq!(store.event_count().await.expect("count"), 8);
}

/// A batch of more sagas than one transaction takes is written in several, each saga whole in one of them: every
/// event is stored once, the cap counts each saga's events, and the derived rows equal the full recompute.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_many_sagas_is_written_in_parts() {
    let db = TestDb::new();
    let store = Store::connect(&db.url, Some(&db.schema), 2)
        .await
        .expect("store")
        .with_max_events_per_saga(Some(2));
    let sagas = saga_tracker_service::db::MAX_SAGAS_PER_TRANSACTION * 2 + 37;
    let mut rng = Rng(0x5eed_0016_0002);
    let mut events: Vec<SagaEvent> = (0..sagas)
        .flat_map(|j| {
            let saga = format!("many-{j}");
            (0..3)
                .map(|_| random_event(&mut rng, &saga))
                .collect::<Vec<_>>()
        })
        .collect();
    for i in (1..events.len()).rev() {
        events.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut batch: Vec<IncomingEvent> = events.iter().map(|e| incoming(e, 0)).collect();
    batch.push(incoming(&events[0], 1)); // a duplicate within the batch
    let w = store.write(&batch).await.expect("write");
    assert_eq!(w.new.len(), 2 * sagas);
    assert_eq!(w.too_long.len(), sagas);
    let mut all: Vec<usize> = w.new.iter().chain(&w.too_long).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..events.len()).collect::<Vec<_>>());
    assert_eq!(store.event_count().await.expect("count"), 2 * sagas as i64);
    for j in [0, sagas / 2, sagas - 1] {
        let saga = format!("many-{j}");
        let row = store.saga(&saga).await.expect("query").expect("row");
        assert_eq!(row.event_count, 2);
        assert_eq!(derived_of(&row), full_recompute(&store, &saga).await);
    }
}

/// Through the service: events over `--max-events-per-saga` go to the DLQ as `saga_too_long` (counted), and the
/// saga's timeline comes in pages that add up to the whole, each checked against the OpenAPI document.
#[tokio::test(flavor = "multi_thread")]
async fn over_the_cap_is_dead_lettered_and_the_timeline_is_paged() {
    use common::{SagaBuilder, TestKafka, conformance::Conformance, header, prom};
    use saga_tracker_core::StepStatus::*;
    use saga_tracker_service::Service;
    use saga_tracker_service::ingest::dlq::headers;

    let db = TestDb::new();
    let kafka = TestKafka::new().await;
    let mut saga = SagaBuilder::new("long-saga", "OrderSaga", 0);
    for i in 0..6 {
        let step = format!("step-{i}");
        saga = saga.ev("svc", &step, Started, 1).ev(
            "svc",
            &step,
            if i == 2 { Failed } else { Succeeded },
            1,
        );
    }
    saga = saga.ev("svc", "step-1", CompensationStarted, 1);
    let events = saga.events;
    assert_eq!(events.len(), 13);
    kafka.send(&events).await;
    let mut config = kafka.config(&db, "cap-test");
    config.max_events_per_saga = 10;
    let service = Service::start(config).await.expect("service starts");
    common::wait_for_events(&service, 10).await;
    let dead = kafka.read_dlq(3);
    assert_eq!(dead.len(), 3);
    for m in &dead {
        assert_eq!(header(m, headers::REASON).as_deref(), Some("saga_too_long"));
    }
    common::eventually("DLQ counted", || async {
        (service.metrics().dlq_total() == 3).then_some(())
    })
    .await;
    let api = common::Api::new(&service, None);
    let scrape = prom::parse(&api.get("/metrics").await.1);
    let counted = [
        "saga_tracker_dlq_messages_total",
        "saga_tracker_dlq_messages",
    ]
    .into_iter()
    .find_map(|name| prom::value(&scrape, name, &[("reason", "saga_too_long")]));
    assert_eq!(counted, Some(3.0));

    let doc = Conformance::fetch(&api).await;
    let whole = doc
        .ok(&api, "/api/v1/sagas/long-saga/timeline?limit=500")
        .await;
    let whole = whole["events"].as_array().expect("events").clone();
    assert_eq!(whole.len(), 10);
    for limit in [1, 3, 4, 10] {
        let mut paged = Vec::new();
        let mut path = format!("/api/v1/sagas/long-saga/timeline?limit={limit}");
        loop {
            let page = doc.ok(&api, &path).await;
            let events = page["events"].as_array().expect("events");
            assert!(events.len() <= limit);
            paged.extend(events.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => {
                    path = format!("/api/v1/sagas/long-saga/timeline?limit={limit}&cursor={c}")
                }
                None => break,
            }
        }
        assert_eq!(paged, whole, "pages of {limit}");
    }
    // default page size, bad parameters
    let (status, _) = doc
        .json(&api, "/api/v1/sagas/long-saga/timeline?cursor=")
        .await;
    assert_eq!(status, 200);
    for bad in [
        "limit=0",
        "limit=501",
        "cursor=zz",
        "cursor=1_9_00000000000000000000000000000000",
        "page=2",
    ] {
        let (status, body) = doc
            .json(&api, &format!("/api/v1/sagas/long-saga/timeline?{bad}"))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    let (status, _) = doc
        .json(
            &api,
            "/api/v1/sagas/nope/timeline?cursor=1_0_00000000000000000000000000000000",
        )
        .await;
    assert_eq!(status, 404);
    service.shutdown().await;
}
