//! `--outbox`: the three services' handlers on PostgreSQL tables ([`crate::store::SCHEMA`]). Each handler runs
//! in one transaction that holds its business change and, through the runtime's outbox
//! ([`StepInTx`]), its step's STARTED and SUCCEEDED (COMPENSATION_STARTED and COMPENSATED): they commit
//! together. A handler that fails rolls the transaction back, and its FAILED (COMPENSATION_FAILED) is recorded
//! outside it, through the service's tracker. The rules are the in-memory services' ([`super::order`],
//! [`super::product`], [`super::payment`]), with the same error types.

use saga_tracker::outbox::StepInTx;
use saga_tracker::{Saga as _, StepStatus, Transition};
use sqlx::{PgConnection, PgPool};

use super::order::{OrderError, OrderStatus};
use super::payment::PaymentError;
use super::product::StockError;
use super::{reply_error, simulate_work, unknown_command};
use crate::saga::{CommandMsg, LEGACY_SKU, OrderSaga, Phase, ReplyError, ServiceName};

/// Runs `service`'s handler for `cmd` on `pool`.
pub async fn handle(
    service: ServiceName,
    pool: &PgPool,
    cmd: &CommandMsg,
) -> Result<(), ReplyError> {
    let step = OrderSaga::ALL
        .into_iter()
        .find(|s| s.wire_name() == cmd.step && s.service() == service);
    match (step, cmd.phase) {
        (Some(OrderSaga::CreateOrder), Phase::Execute) => {
            in_tx(pool, cmd, OrderSaga::CreateOrder, cmd.phase, create_order).await
        }
        (Some(OrderSaga::CreateOrder), Phase::Compensate) => {
            in_tx(pool, cmd, OrderSaga::CreateOrder, cmd.phase, cancel_order).await
        }
        (Some(OrderSaga::ConfirmOrder), Phase::Execute) => {
            in_tx(pool, cmd, OrderSaga::ConfirmOrder, cmd.phase, confirm_order).await
        }
        (Some(OrderSaga::ReserveStock), Phase::Execute) => {
            in_tx(pool, cmd, OrderSaga::ReserveStock, cmd.phase, reserve_stock).await
        }
        (Some(OrderSaga::ReserveStock), Phase::Compensate) => {
            in_tx(pool, cmd, OrderSaga::ReserveStock, cmd.phase, release_stock).await
        }
        (Some(OrderSaga::ChargePayment), Phase::Execute) => {
            in_tx(
                pool,
                cmd,
                OrderSaga::ChargePayment,
                cmd.phase,
                charge_payment,
            )
            .await
        }
        (Some(OrderSaga::ChargePayment), Phase::Compensate) => {
            in_tx(
                pool,
                cmd,
                OrderSaga::ChargePayment,
                cmd.phase,
                refund_payment,
            )
            .await
        }
        _ => Err(unknown_command(service, cmd)),
    }
}

/// Why a stored handler could not run: a database error, the outbox write failing, or the handler's own error.
trait FromDb {
    fn from_db(error: String) -> Self;
}

impl FromDb for OrderError {
    fn from_db(error: String) -> Self {
        OrderError::Database(error)
    }
}

impl FromDb for StockError {
    fn from_db(error: String) -> Self {
        StockError::Database(error)
    }
}

impl FromDb for PaymentError {
    fn from_db(error: String) -> Self {
        PaymentError::Database(error)
    }
}

/// One handler call in one transaction: STARTED into it, the business change, SUCCEEDED into it and commit; or
/// on an error, FAILED through the tracker and roll back.
async fn in_tx<E, F>(
    pool: &PgPool,
    cmd: &CommandMsg,
    step: OrderSaga,
    phase: Phase,
    body: F,
) -> Result<(), ReplyError>
where
    E: std::error::Error + FromDb + 'static,
    F: AsyncFnOnce(&mut PgConnection, &CommandMsg) -> Result<(), E>,
{
    let status = match phase {
        Phase::Execute => StepStatus::Started,
        Phase::Compensate => StepStatus::CompensationStarted,
    };
    let transition = Transition::new(
        OrderSaga::NAME,
        step.wire_name(),
        cmd.saga_id.as_str(),
        status,
    )
    .order_id(cmd.order_id.as_str());
    let db = |e: &dyn std::fmt::Display| reply_error(&E::from_db(e.to_string()));
    let mut tx = pool.begin().await.map_err(|e| db(&e))?;
    // A failed start records FAILED itself; the transaction rolls back when dropped.
    let recorded = StepInTx::start(&mut tx, transition)
        .await
        .map_err(|e| db(&e))?;
    simulate_work(&cmd.saga_id, step.wire_name(), 1).await;
    let result: Result<(), E> = body(&mut tx, cmd).await;
    recorded
        .finish(&mut tx, &result)
        .await
        .map_err(|e| db(&e))?;
    match result {
        Ok(()) => tx.commit().await.map_err(|e| db(&e)),
        Err(error) => {
            tx.rollback().await.map_err(|e| db(&e))?;
            Err(reply_error(&error))
        }
    }
}

fn sql<E: FromDb>(error: sqlx::Error) -> E {
    E::from_db(error.to_string())
}

async fn create_order(conn: &mut PgConnection, cmd: &CommandMsg) -> Result<(), OrderError> {
    let inserted = sqlx::query(
        "INSERT INTO orders (order_id, saga_id, status) VALUES ($1, $2, 'PENDING') ON CONFLICT DO NOTHING",
    )
    .bind(&cmd.order_id)
    .bind(&cmd.saga_id)
    .execute(conn)
    .await
    .map_err(sql)?;
    if inserted.rows_affected() == 0 {
        return Err(OrderError::AlreadyExists(cmd.order_id.clone()));
    }
    Ok(())
}

/// Moves a pending order to `to`.
async fn settle_order(
    conn: &mut PgConnection,
    order_id: &str,
    to: OrderStatus,
) -> Result<(), OrderError> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM orders WHERE order_id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql)?;
    let status = match status.as_deref() {
        None => return Err(OrderError::UnknownOrder(order_id.to_owned())),
        Some("PENDING") => OrderStatus::Pending,
        Some("CONFIRMED") => OrderStatus::Confirmed,
        Some(_) => OrderStatus::Cancelled,
    };
    if status != OrderStatus::Pending {
        return Err(OrderError::NotPending {
            order_id: order_id.to_owned(),
            status,
        });
    }
    let to = match to {
        OrderStatus::Pending => "PENDING",
        OrderStatus::Confirmed => "CONFIRMED",
        OrderStatus::Cancelled => "CANCELLED",
    };
    sqlx::query("UPDATE orders SET status = $2 WHERE order_id = $1")
        .bind(order_id)
        .bind(to)
        .execute(conn)
        .await
        .map_err(sql)?;
    Ok(())
}

async fn cancel_order(conn: &mut PgConnection, cmd: &CommandMsg) -> Result<(), OrderError> {
    settle_order(conn, &cmd.order_id, OrderStatus::Cancelled).await
}

async fn confirm_order(conn: &mut PgConnection, cmd: &CommandMsg) -> Result<(), OrderError> {
    settle_order(conn, &cmd.order_id, OrderStatus::Confirmed).await
}

async fn reserve_stock(conn: &mut PgConnection, cmd: &CommandMsg) -> Result<(), StockError> {
    let line = &cmd.line;
    let available: Option<i64> =
        sqlx::query_scalar("SELECT available FROM stock WHERE sku = $1 FOR UPDATE")
            .bind(&line.sku)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql)?;
    let available = available.ok_or_else(|| StockError::UnknownSku(line.sku.clone()))?;
    if available < i64::from(line.qty) {
        return Err(StockError::OutOfStock {
            sku: line.sku.clone(),
            available: u64::try_from(available).unwrap_or(0),
            wanted: line.qty,
        });
    }
    sqlx::query("UPDATE stock SET available = available - $2 WHERE sku = $1")
        .bind(&line.sku)
        .bind(i64::from(line.qty))
        .execute(&mut *conn)
        .await
        .map_err(sql)?;
    sqlx::query("INSERT INTO reservations (saga_id, sku, qty) VALUES ($1, $2, $3)")
        .bind(&cmd.saga_id)
        .bind(&line.sku)
        .bind(i32::try_from(line.qty).unwrap_or(i32::MAX))
        .execute(conn)
        .await
        .map_err(sql)?;
    Ok(())
}

async fn release_stock(conn: &mut PgConnection, cmd: &CommandMsg) -> Result<(), StockError> {
    // Marked released first: the legacy warehouse's refusal below rolls this back.
    let reserved: Option<(String, i32)> = sqlx::query_as(
        "UPDATE reservations SET released = true WHERE saga_id = $1 AND NOT released RETURNING sku, qty",
    )
    .bind(&cmd.saga_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql)?;
    let (sku, qty) = reserved.ok_or_else(|| StockError::NoReservation(cmd.saga_id.clone()))?;
    if sku == LEGACY_SKU {
        return Err(StockError::LedgerReadOnly {
            sku,
            qty: cmd.line.qty,
        });
    }
    sqlx::query("UPDATE stock SET available = available + $2 WHERE sku = $1")
        .bind(&sku)
        .bind(i64::from(
            qty.min(i32::try_from(cmd.line.qty).unwrap_or(i32::MAX)),
        ))
        .execute(conn)
        .await
        .map_err(sql)?;
    Ok(())
}

async fn charge_payment(conn: &mut PgConnection, cmd: &CommandMsg) -> Result<(), PaymentError> {
    let line = &cmd.line;
    // Charged first: a balance that goes negative rolls the charge back.
    let balance: Option<i64> = sqlx::query_scalar(
        "UPDATE wallets SET balance_cents = balance_cents - $2 WHERE customer = $1 RETURNING balance_cents",
    )
    .bind(&line.customer)
    .bind(line.amount_cents)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql)?;
    let balance = balance.ok_or_else(|| PaymentError::UnknownCustomer(line.customer.clone()))?;
    if balance < 0 {
        return Err(PaymentError::InsufficientFunds {
            customer: line.customer.clone(),
            balance_cents: balance + line.amount_cents,
            amount_cents: line.amount_cents,
        });
    }
    sqlx::query("INSERT INTO payments (saga_id, customer, amount_cents) VALUES ($1, $2, $3)")
        .bind(&cmd.saga_id)
        .bind(&line.customer)
        .bind(line.amount_cents)
        .execute(conn)
        .await
        .map_err(sql)?;
    Ok(())
}

async fn refund_payment(conn: &mut PgConnection, cmd: &CommandMsg) -> Result<(), PaymentError> {
    let charged: Option<(String, i64)> = sqlx::query_as(
        "UPDATE payments SET refunded = true WHERE saga_id = $1 AND NOT refunded RETURNING customer, amount_cents",
    )
    .bind(&cmd.saga_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql)?;
    let (customer, amount) = charged.ok_or_else(|| PaymentError::NoCharge(cmd.saga_id.clone()))?;
    sqlx::query("UPDATE wallets SET balance_cents = balance_cents + $2 WHERE customer = $1")
        .bind(&customer)
        .bind(amount)
        .execute(conn)
        .await
        .map_err(sql)?;
    Ok(())
}
