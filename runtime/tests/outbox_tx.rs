//! Recording in the caller's transaction (real PostgreSQL, real Kafka protocol): commit → the step's events on
//! the topic exactly once; rollback → none of its in-transaction events, its FAILED is there.

mod outbox_support;

use outbox_support::{TestDb, TestTopic, drain};
use saga_tracker::outbox::{OUTBOX_ERROR_KIND, OutboxError, StepInTx, record_in_tx};
use saga_tracker::{StepStatus, Transition, with_default_async};
use sqlx::PgConnection;

#[derive(Debug, thiserror::Error)]
#[error("out of stock: {0}")]
struct OutOfStock(String);

async fn stock_table(db: &TestDb) {
    sqlx::query(
        "CREATE TABLE stock (sku TEXT PRIMARY KEY, available INT NOT NULL CHECK (available >= 0))",
    )
    .execute(&db.pool)
    .await
    .expect("stock table");
    sqlx::query("INSERT INTO stock VALUES ('A', 1)")
        .execute(&db.pool)
        .await
        .expect("stock");
}

/// The business change: take one unit of `sku`.
async fn take_one(conn: &mut PgConnection, sku: &str) -> Result<(), OutOfStock> {
    sqlx::query("UPDATE stock SET available = available - 1 WHERE sku = $1")
        .bind(sku)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| OutOfStock(e.to_string()))
}

async fn available(db: &TestDb) -> i32 {
    sqlx::query_scalar("SELECT available FROM stock WHERE sku = 'A'")
        .fetch_one(&db.pool)
        .await
        .expect("available")
}

/// One reservation as a service would write it: the step's events and the stock change in one transaction.
async fn reserve(db: &TestDb, saga_id: &str) -> Result<(), OutOfStock> {
    let mut tx = db.pool.begin().await.expect("begin");
    let step = StepInTx::start(
        &mut tx,
        Transition::new("OrderSaga", "reserve_stock", saga_id, StepStatus::Started)
            .order_id(format!("order-{saga_id}")),
    )
    .await
    .expect("STARTED written");
    let result = take_one(&mut tx, "A").await;
    step.finish(&mut tx, &result).await.expect("terminal event");
    match &result {
        Ok(()) => tx.commit().await.expect("commit"),
        Err(_) => tx.rollback().await.expect("rollback"),
    }
    result
}

#[tokio::test]
async fn commit_publishes_the_steps_events_once_and_rollback_only_its_failure() {
    let db = TestDb::new().await;
    stock_table(&db).await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());

    with_default_async(&tracker, async {
        reserve(&db, "saga-ok")
            .await
            .expect("first reservation succeeds");
        // The CHECK constraint fails the second: the transaction rolls back.
        reserve(&db, "saga-rolled-back")
            .await
            .expect_err("second reservation fails");
    })
    .await;
    assert_eq!(available(&db).await, 0, "only the committed change stays");
    assert_eq!(
        db.rows().await,
        2,
        "only the committed transaction's rows stay"
    );

    let relay = kafka.relay(db.pool(2).await, 100);
    assert_eq!(drain(&relay).await, 2);
    assert_eq!(
        drain(&relay).await,
        0,
        "a second pass publishes nothing again"
    );
    tracker
        .flush(outbox_support::T)
        .expect("flush the direct failure");

    let messages = kafka.read();
    let of = |saga: &str| {
        messages
            .iter()
            .filter(|m| m.event.saga_id == saga)
            .map(|m| m.event.status)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("saga-ok"), [StepStatus::Started, StepStatus::Succeeded]);
    assert_eq!(
        of("saga-rolled-back"),
        [StepStatus::Failed],
        "no STARTED from the rolled-back transaction, and its FAILED is there"
    );
    let failed = messages
        .iter()
        .find(|m| m.event.status == StepStatus::Failed)
        .expect("failed");
    let error = failed.event.error.as_ref().expect("error");
    assert_eq!(error.kind, "OutOfStock");
    assert!(
        error.message.contains("available_check"),
        "{}",
        error.message
    );
    for m in &messages {
        assert_eq!(m.key, m.event.saga_id, "key = saga id");
        assert_eq!(m.event.service, "product-service");
        assert_eq!(
            m.event.order_id.as_deref(),
            Some(&*format!("order-{}", m.event.saga_id))
        );
    }
    let ok: Vec<_> = messages
        .iter()
        .filter(|m| m.event.saga_id == "saga-ok")
        .collect();
    assert!(ok[1].event.duration_micros.is_some());
    assert_ne!(ok[0].event.event_id, ok[1].event.event_id);
    // The rows hold the bytes that went out.
    let stored: Vec<(uuid::Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT event_id, payload FROM saga_tracker_outbox ORDER BY event_id")
            .fetch_all(&db.pool)
            .await
            .expect("rows");
    for (id, payload) in stored {
        let sent = ok
            .iter()
            .find(|m| m.event.event_id == id)
            .expect("published");
        assert_eq!(sent.payload, payload);
    }
}

#[tokio::test]
async fn a_panicking_step_records_its_failure_outside_the_transaction() {
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    let pool = db.pool.clone();
    let task = tokio::spawn(with_default_async(&tracker, async move {
        let mut tx = pool.begin().await.expect("begin");
        let _step = StepInTx::start(
            &mut tx,
            Transition::new(
                "OrderSaga",
                "charge_payment",
                "saga-panics",
                StepStatus::Started,
            ),
        )
        .await
        .expect("STARTED");
        panic!("card processor exploded");
    }));
    assert!(task.await.expect_err("the task panicked").is_panic());
    tracker.flush(outbox_support::T).expect("flush");
    assert_eq!(db.rows().await, 0, "the transaction was rolled back");
    let messages = kafka.read();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].event.status, StepStatus::Failed);
    assert_eq!(
        messages[0].event.error.as_ref().expect("error").kind,
        "panic"
    );
}

#[tokio::test]
async fn compensations_commit_with_their_transaction() {
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    with_default_async(&tracker, async {
        let mut tx = db.pool.begin().await.expect("begin");
        let step = StepInTx::start(
            &mut tx,
            Transition::new(
                "OrderSaga",
                "reserve_stock",
                "saga-comp",
                StepStatus::CompensationStarted,
            ),
        )
        .await
        .expect("COMPENSATION_STARTED");
        step.finish(&mut tx, &Ok::<(), OutOfStock>(()))
            .await
            .expect("COMPENSATED");
        tx.commit().await.expect("commit");
        // A compensation that fails: COMPENSATION_FAILED directly, nothing from its transaction.
        let mut tx = db.pool.begin().await.expect("begin");
        let step = StepInTx::start(
            &mut tx,
            Transition::new(
                "OrderSaga",
                "charge_payment",
                "saga-comp",
                StepStatus::CompensationStarted,
            ),
        )
        .await
        .expect("COMPENSATION_STARTED");
        step.finish(&mut tx, &Err::<(), _>(OutOfStock("refund refused".into())))
            .await
            .expect("recorded");
        tx.rollback().await.expect("rollback");
    })
    .await;
    let relay = kafka.relay(db.pool.clone(), 10);
    assert_eq!(drain(&relay).await, 2);
    tracker.flush(outbox_support::T).expect("flush");
    let mut got: Vec<_> = kafka
        .read()
        .into_iter()
        .map(|m| (m.event.step, m.event.status))
        .collect();
    got.sort_by_key(|(step, status)| (step.clone(), status.to_string()));
    assert_eq!(
        got,
        [
            ("charge_payment".to_owned(), StepStatus::CompensationFailed),
            ("reserve_stock".to_owned(), StepStatus::Compensated),
            ("reserve_stock".to_owned(), StepStatus::CompensationStarted),
        ]
    );
}

#[tokio::test]
async fn a_failed_outbox_write_is_an_error_and_the_failure_is_recorded_directly() {
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    with_default_async(&tracker, async {
        let mut tx = db.pool.begin().await.expect("begin");
        // The business code hit an error earlier: the transaction is aborted.
        sqlx::query("SELECT 1/0")
            .execute(&mut *tx)
            .await
            .expect_err("division by zero");
        let err = StepInTx::start(
            &mut tx,
            Transition::new(
                "OrderSaga",
                "reserve_stock",
                "saga-aborted",
                StepStatus::Started,
            ),
        )
        .await
        .expect_err("cannot write into an aborted transaction");
        assert!(matches!(err, OutboxError::Write { .. }), "{err}");
        tx.rollback().await.expect("rollback");

        let mut tx = db.pool.begin().await.expect("begin");
        let err = StepInTx::start(
            &mut tx,
            Transition::new(
                "OrderSaga",
                "reserve_stock",
                "saga-x",
                StepStatus::Succeeded,
            ),
        )
        .await
        .expect_err("not a start");
        assert!(
            matches!(err, OutboxError::NotAStart(StepStatus::Succeeded)),
            "{err}"
        );
        let err = record_in_tx(
            &mut tx,
            Transition::new("OrderSaga", "reserve_stock", "", StepStatus::Started),
        )
        .await
        .expect_err("empty saga id");
        assert!(err.to_string().contains("saga id is empty"), "{err}");
    })
    .await;
    // No tracker in scope: a clear error, nothing written.
    let mut tx = db.pool.begin().await.expect("begin");
    let err = record_in_tx(
        &mut tx,
        Transition::new("OrderSaga", "reserve_stock", "saga-y", StepStatus::Started),
    )
    .await
    .expect_err("no tracker");
    assert!(
        err.to_string().contains("no saga tracker installed"),
        "{err}"
    );
    drop(tx);

    tracker.flush(outbox_support::T).expect("flush");
    assert_eq!(db.rows().await, 0);
    let messages = kafka.read();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].event.saga_id, "saga-aborted");
    assert_eq!(messages[0].event.status, StepStatus::Failed);
    let error = messages[0].event.error.as_ref().expect("error");
    assert_eq!(error.kind, OUTBOX_ERROR_KIND);
    assert!(
        error.message.contains("current transaction is aborted"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn the_trace_of_the_step_travels_as_a_traceparent_header() {
    use opentelemetry::context::FutureExt as _;
    use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider as _};
    let db = TestDb::new().await;
    let kafka = TestTopic::new();
    let spool = tempfile::tempdir().expect("spool");
    let tracker = kafka.tracker(spool.path());
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let span = provider.tracer("test").start("reserve");
    let cx = opentelemetry::Context::current_with_span(span);
    let (trace_id, span_id) = {
        let sc = cx.span().span_context().clone();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    };
    let mut tx = db.pool.begin().await.expect("begin");
    // The step runs inside the span: the ids are read when it starts.
    async {
        let step = StepInTx::start_with(
            &tracker,
            &mut tx,
            Transition::new(
                "OrderSaga",
                "reserve_stock",
                "saga-traced",
                StepStatus::Started,
            ),
        )
        .await
        .expect("STARTED");
        step.finish(&mut tx, &Ok::<(), OutOfStock>(()))
            .await
            .expect("SUCCEEDED");
    }
    .with_context(cx)
    .await;
    tx.commit().await.expect("commit");
    assert_eq!(drain(&kafka.relay(db.pool.clone(), 10)).await, 2);
    let messages = kafka.read();
    assert_eq!(messages.len(), 2);
    for m in messages {
        assert_eq!(
            m.headers.get("traceparent").map(String::as_str),
            Some(&*format!("00-{trace_id}-{span_id}-01"))
        );
        assert_eq!(m.event.trace_id(), Some(&*trace_id));
    }
}
