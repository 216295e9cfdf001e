//! `outbox = tx`: a step and a compensation whose events are written into the handler's transaction, as a
//! `&mut sqlx::Transaction<'_, Postgres>` or a `&mut PgConnection`, in free fns, associated fns and methods.
use saga_tracker::{Saga, saga_compensation, saga_step};
use sqlx::{PgConnection, Postgres, Transaction};

#[derive(Saga)]
pub enum OrderSaga {
    #[step(compensable)]
    ReserveStock,
    ChargePayment,
}

pub struct Cmd {
    pub saga_id: String,
}

#[derive(Debug)]
pub struct E;
impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("e")
    }
}

#[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id, outbox = tx)]
pub async fn reserve(tx: &mut Transaction<'_, Postgres>, cmd: Cmd) -> Result<u64, E> {
    let done = sqlx::query("UPDATE stock SET reserved = reserved + 1")
        .execute(&mut **tx)
        .await
        .map_err(|_| E)?;
    Ok(done.rows_affected())
}

#[saga_compensation(OrderSaga, ReserveStock, outbox = conn)]
pub async fn release(#[saga_id] saga_id: String, mut conn: &mut PgConnection) -> Result<(), E> {
    let _ = &saga_id;
    sqlx::query("UPDATE stock SET reserved = reserved - 1")
        .execute(&mut *conn)
        .await
        .map_err(|_| E)?;
    conn = &mut *conn;
    let _ = conn;
    Ok(())
}

pub struct Payments;

impl Payments {
    #[saga_step(OrderSaga, ChargePayment, saga_id = cmd.saga_id, outbox = tx)]
    pub async fn charge(&self, cmd: &Cmd, tx: &mut Transaction<'_, Postgres>) -> Result<(), E> {
        let _ = (cmd, &mut **tx);
        Ok(())
    }

    #[saga_step(OrderSaga, ChargePayment, saga_id = cmd.saga_id, outbox = tx)]
    pub async fn charge_without_self(cmd: &Cmd, tx: &mut Transaction<'_, Postgres>) -> Result<(), E> {
        let _ = (cmd, &mut **tx);
        Ok(())
    }
}

fn main() {
    let _ = (reserve, release, Payments::charge, Payments::charge_without_self);
}
