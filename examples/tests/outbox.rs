//! `--outbox`: the demo's services on real PostgreSQL tables (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each step's events committed with its business change through
//! the transactional outbox and published by the relay, on a MockCluster (or `SAGA_TRACKER_TEST_BROKERS`).
//! The report built from `saga.tracker` is consistent; every committed business row has its events on the topic
//! exactly once; a rolled-back step left no row and no STARTED/SUCCEEDED, but its FAILED is there.

use std::collections::{BTreeMap, HashMap, HashSet};

use saga_tracker::testing::TestKafka;
use saga_tracker::{SagaEvent, StepStatus};
use saga_tracker_examples::bus::all_topics;
use saga_tracker_examples::central_tracker::DEFAULT_DATABASE_URL;
use saga_tracker_examples::orchestrator::Fate;
use saga_tracker_examples::store::OutboxOptions;
use saga_tracker_examples::{BrokerChoice, DemoConfig, DemoOutcome, RunReport, run};
use sqlx::PgPool;
use uuid::Uuid;

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// Drops the run's kept schema at the end of the test (also when it fails).
struct DropSchema(String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            if let Ok(pool) = PgPool::connect(&database_url()).await {
                let _ = sqlx::query(&sql).execute(&pool).await;
                pool.close().await;
            }
        });
    }
}

/// The events of one saga's step with one status.
fn count(events: &[SagaEvent], saga: &str, step: &str, status: StepStatus) -> usize {
    events
        .iter()
        .filter(|e| e.saga_id == saga && e.step == step && e.status == status)
        .count()
}

#[test]
fn outbox_demo_commits_events_with_business_rows_and_publishes_each_once() {
    let kafka = TestKafka::start().expect("test kafka");
    for topic in all_topics() {
        kafka.create_topic(topic, 3).expect("topic");
    }
    let outcome = run(DemoConfig {
        sagas: 40,
        failure_rate: 0.4,
        compensation_failure_rate: 0.4,
        brokers: BrokerChoice::External(kafka.brokers().to_owned()),
        progress: false,
        outbox: Some(OutboxOptions {
            database_url: database_url(),
            keep_data: true,
        }),
        ..DemoConfig::default()
    })
    .expect("demo runs");
    let report: Box<RunReport> = match outcome {
        DemoOutcome::Report(report) => report,
        DemoOutcome::Served(_) => panic!("expected a report"),
    };
    let outbox = report.outbox.clone().expect("outbox report");
    let _drop = DropSchema(outbox.schema.clone());
    assert!(report.is_consistent(), "problems: {:?}", report.problems());
    assert!(outbox.rows > 0);
    assert_eq!(outbox.published, outbox.rows, "every outbox row published");
    let events = &report.events;
    let fates: HashMap<&str, Fate> = report
        .plans
        .iter()
        .map(|p| (p.saga_id.as_str(), p.fate))
        .collect();
    assert!(fates.values().any(|f| *f == Fate::FailAtPayment));
    assert!(fates.values().any(|f| *f == Fate::FailAtPaymentAndRelease));
    assert!(fates.values().any(|f| *f == Fate::Complete));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pool = PgPool::connect(&database_url()).await.expect("database");
        let schema = &outbox.schema;
        let q = |table: &str| format!("SELECT * FROM \"{schema}\".{table}");

        // The outbox: each row's event on the topic exactly once; every event that is not a failure came
        // through it, and no failure did.
        let outbox_ids: Vec<Uuid> = sqlx::query_scalar(&format!(
            "SELECT event_id FROM \"{schema}\".saga_tracker_outbox WHERE published_at IS NOT NULL"
        ))
        .fetch_all(&pool)
        .await
        .expect("outbox rows");
        assert_eq!(outbox_ids.len() as i64, outbox.rows);
        let mut on_topic: HashMap<Uuid, usize> = HashMap::new();
        for e in events {
            *on_topic.entry(e.event_id).or_default() += 1;
        }
        for id in &outbox_ids {
            assert_eq!(
                on_topic.get(id),
                Some(&1),
                "outbox event {id} on the topic once"
            );
        }
        let outbox_ids: HashSet<Uuid> = outbox_ids.into_iter().collect();
        for e in events {
            let failure = matches!(
                e.status,
                StepStatus::Failed | StepStatus::CompensationFailed
            );
            assert_eq!(
                outbox_ids.contains(&e.event_id),
                !failure,
                "{} {} {}: through the outbox unless a failure",
                e.saga_id,
                e.step,
                e.status
            );
        }

        // Orders: every committed order has create_order STARTED + SUCCEEDED once; cancelled ones were
        // compensated, confirmed ones confirmed.
        let orders: Vec<(String, String, String)> = sqlx::query_as(&q("orders"))
            .fetch_all(&pool)
            .await
            .expect("orders");
        assert_eq!(orders.len(), report.plans.len(), "one order per saga");
        for (_, saga, status) in &orders {
            assert_eq!(count(events, saga, "create_order", StepStatus::Started), 1);
            assert_eq!(
                count(events, saga, "create_order", StepStatus::Succeeded),
                1
            );
            let (cancelled, confirmed) = match fates[saga.as_str()] {
                Fate::Complete => (0, 1),
                _ => (1, 0),
            };
            assert_eq!(
                count(events, saga, "create_order", StepStatus::Compensated),
                cancelled
            );
            assert_eq!(
                count(events, saga, "confirm_order", StepStatus::Succeeded),
                confirmed
            );
            let expected = if cancelled == 1 {
                "CANCELLED"
            } else {
                "CONFIRMED"
            };
            assert_eq!(status, expected, "{saga}");
        }

        // Reservations: each with reserve_stock STARTED + SUCCEEDED once. A failed release rolled back: the
        // reservation is still held, and the topic has its COMPENSATION_FAILED without a
        // COMPENSATION_STARTED.
        let reservations: Vec<(String, String, i32, bool)> = sqlx::query_as(&q("reservations"))
            .fetch_all(&pool)
            .await
            .expect("reservations");
        assert_eq!(reservations.len(), report.plans.len());
        for (saga, _, _, released) in &reservations {
            assert_eq!(count(events, saga, "reserve_stock", StepStatus::Started), 1);
            assert_eq!(
                count(events, saga, "reserve_stock", StepStatus::Succeeded),
                1
            );
            match fates[saga.as_str()] {
                // a hanging saga (--hang-sagas, not used here) keeps its reservation like a completed one
                Fate::Complete | Fate::HangAfterReserve => assert!(!released),
                Fate::FailAtPayment => {
                    assert!(released, "{saga}");
                    assert_eq!(
                        count(events, saga, "reserve_stock", StepStatus::Compensated),
                        1
                    );
                }
                Fate::FailAtPaymentAndRelease => {
                    assert!(!released, "{saga}: the release rolled back");
                    let started = count(
                        events,
                        saga,
                        "reserve_stock",
                        StepStatus::CompensationStarted,
                    );
                    assert_eq!(started, 0, "{saga}: rolled back with the release");
                    assert_eq!(
                        count(
                            events,
                            saga,
                            "reserve_stock",
                            StepStatus::CompensationFailed
                        ),
                        1
                    );
                }
            }
        }

        // Payments: a row only for the sagas that paid, each with charge_payment STARTED + SUCCEEDED once.
        // A failed charge rolled back (no row, the broke wallet untouched): no STARTED or SUCCEEDED of it on
        // the topic, its FAILED once.
        let payments: BTreeMap<String, (String, i64, bool)> =
            sqlx::query_as::<_, (String, String, i64, bool)>(&q("payments"))
                .fetch_all(&pool)
                .await
                .expect("payments")
                .into_iter()
                .map(|(saga, customer, amount, refunded)| (saga, (customer, amount, refunded)))
                .collect();
        for (saga, fate) in &fates {
            let charged = payments.contains_key(*saga);
            assert_eq!(charged, *fate == Fate::Complete, "{saga}");
            let (started, succeeded, failed) = (
                count(events, saga, "charge_payment", StepStatus::Started),
                count(events, saga, "charge_payment", StepStatus::Succeeded),
                count(events, saga, "charge_payment", StepStatus::Failed),
            );
            if charged {
                assert_eq!((started, succeeded, failed), (1, 1, 0), "{saga}");
            } else {
                assert_eq!((started, succeeded, failed), (0, 0, 1), "{saga}");
            }
        }
        let broke: i64 = sqlx::query_scalar(&format!(
            "SELECT balance_cents FROM \"{schema}\".wallets WHERE customer = 'cust-broke'"
        ))
        .fetch_one(&pool)
        .await
        .expect("wallet");
        assert_eq!(broke, 0, "the failed charges rolled back");
        pool.close().await;
    });
}
