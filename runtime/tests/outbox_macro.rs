//! The attribute form of the outbox (real PostgreSQL): `#[saga_step(.., outbox = tx)]` writes STARTED and
//! SUCCEEDED into the handler's transaction (they commit or roll back with it) and records FAILED outside it.

mod outbox_support;

use outbox_support::{T, TestDb};
use saga_tracker::{
    MemorySink, Saga, SagaEvent, StepStatus, Tracker, codec, saga_compensation, saga_step,
    with_default_async,
};
use sqlx::{PgConnection, Postgres, Transaction};

#[derive(Saga)]
enum OrderSaga {
    #[step(compensable)]
    ReserveStock,
    ChargePayment,
}

#[derive(Debug, thiserror::Error)]
#[error("out of stock: {0}")]
struct OutOfStock(String);

struct Reserve {
    saga_id: String,
    sku: &'static str,
}

/// The business change and the step's events in the caller's transaction.
#[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id, outbox = tx)]
async fn reserve(tx: &mut Transaction<'_, Postgres>, cmd: &Reserve) -> Result<(), OutOfStock> {
    sqlx::query("UPDATE stock SET available = available - 1 WHERE sku = $1")
        .bind(cmd.sku)
        .execute(&mut **tx)
        .await
        .map(|_| ())
        .map_err(|e| OutOfStock(e.to_string()))
}

#[saga_compensation(OrderSaga, ReserveStock, saga_id = cmd.saga_id, outbox = conn)]
async fn release(conn: &mut PgConnection, cmd: &Reserve) -> Result<(), OutOfStock> {
    sqlx::query("UPDATE stock SET available = available + 1 WHERE sku = $1")
        .bind(cmd.sku)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| OutOfStock(e.to_string()))
}

#[saga_step(OrderSaga, ChargePayment, saga_id = saga_id, outbox = tx)]
async fn charge(saga_id: &str, tx: &mut Transaction<'_, Postgres>) -> Result<(), OutOfStock> {
    sqlx::query("SELECT 1")
        .execute(&mut **tx)
        .await
        .map_err(|e| OutOfStock(e.to_string()))?;
    if saga_id.starts_with("saga-panic") {
        panic!("card processor exploded for {saga_id}");
    }
    Ok(())
}

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

/// The events committed to saga_tracker_outbox.
async fn outbox_events(db: &TestDb) -> Vec<SagaEvent> {
    let rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM saga_tracker_outbox ORDER BY created_at")
            .fetch_all(&db.pool)
            .await
            .expect("rows");
    rows.iter()
        .map(|p| codec::decode(p).expect("a saga-tracker event"))
        .collect()
}

fn statuses<'a>(events: impl IntoIterator<Item = &'a SagaEvent>, saga: &str) -> Vec<StepStatus> {
    events
        .into_iter()
        .filter(|e| e.saga_id == saga)
        .map(|e| e.status)
        .collect()
}

#[tokio::test]
async fn the_attribute_writes_start_and_success_into_the_transaction_and_failure_outside_it() {
    let db = TestDb::new().await;
    stock_table(&db).await;
    let direct = MemorySink::new();
    let tracker = Tracker::builder()
        .service("product-service")
        .sink(direct.clone())
        .without_spool()
        .build()
        .expect("tracker");
    let cmd = |saga: &str| Reserve {
        saga_id: saga.to_owned(),
        sku: "A",
    };

    with_default_async(&tracker, async {
        // Commit: the stock change, STARTED and SUCCEEDED together.
        let mut tx = db.pool.begin().await.expect("begin");
        reserve(&mut tx, &cmd("saga-commit"))
            .await
            .expect("reserved");
        tx.commit().await.expect("commit");
        // The handler succeeds but its caller rolls back: none of its events stay.
        let mut tx = db.pool.begin().await.expect("begin");
        release(&mut tx, &cmd("saga-rollback"))
            .await
            .expect("released");
        tx.rollback().await.expect("rollback");
        // Err (the CHECK constraint: no stock left): FAILED outside the transaction, which rolls back.
        let mut tx = db.pool.begin().await.expect("begin");
        reserve(&mut tx, &cmd("saga-err"))
            .await
            .expect_err("out of stock");
        tx.rollback().await.expect("rollback");
        // A `&mut PgConnection` parameter, committed: a compensation's events.
        let mut tx = db.pool.begin().await.expect("begin");
        release(&mut tx, &cmd("saga-commit"))
            .await
            .expect("released");
        tx.commit().await.expect("commit");
    })
    .await;

    // A panic: FAILED (kind `panic`) outside the transaction, then the panic goes on.
    let pool = db.pool.clone();
    let panicked = tokio::spawn(with_default_async(&tracker, async move {
        let mut tx = pool.begin().await.expect("begin");
        let _ = charge("saga-panic", &mut tx).await;
    }))
    .await
    .expect_err("the handler panicked");
    assert!(panicked.is_panic());
    tracker.flush(T).expect("flush the direct events");

    let committed = outbox_events(&db).await;
    // Rows of one transaction share `created_at`; the event ids do not order them.
    let sorted = |mut v: Vec<StepStatus>| {
        v.sort_by_key(|s| s.to_string());
        v
    };
    assert_eq!(
        sorted(statuses(&committed, "saga-commit")),
        sorted(vec![
            StepStatus::Started,
            StepStatus::Succeeded,
            StepStatus::CompensationStarted,
            StepStatus::Compensated
        ])
    );
    assert_eq!(
        committed.len(),
        4,
        "nothing from the rolled-back transactions: {committed:?}"
    );
    let stock: i32 = sqlx::query_scalar("SELECT available FROM stock WHERE sku = 'A'")
        .fetch_one(&db.pool)
        .await
        .expect("stock");
    assert_eq!(stock, 1, "reserved, then released: both committed");
    for e in &committed {
        assert_eq!(e.saga_type, "OrderSaga");
        assert_eq!(e.step, "reserve_stock");
        assert_eq!(e.service, "product-service");
    }

    let direct = direct.events();
    assert_eq!(statuses(&direct, "saga-err"), [StepStatus::Failed]);
    assert_eq!(statuses(&direct, "saga-panic"), [StepStatus::Failed]);
    assert!(
        statuses(&direct, "saga-commit").is_empty()
            && statuses(&direct, "saga-rollback").is_empty()
    );
    let error = |saga: &str| {
        direct
            .iter()
            .find(|e| e.saga_id == saga)
            .and_then(|e| e.error.clone())
            .expect("an error")
    };
    assert_eq!(error("saga-err").kind, "OutOfStock");
    assert!(error("saga-err").message.contains("available_check"));
    assert_eq!(error("saga-panic").kind, "panic");
    assert!(
        error("saga-panic")
            .message
            .contains("card processor exploded")
    );
}
