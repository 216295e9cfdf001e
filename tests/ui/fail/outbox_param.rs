// syntax: accepted
//! `outbox = ..` must name a parameter that is a `&mut` transaction of an `async fn`.
use saga_tracker::{Saga, saga_step};
use sqlx::{Postgres, Transaction};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

#[derive(Debug)]
pub struct E;
impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("e")
    }
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id, outbox = txn)]
pub async fn no_such_parameter(id: &str, tx: &mut Transaction<'_, Postgres>) -> Result<(), E> {
    let _ = tx;
    Ok(())
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id, outbox = tx)]
pub async fn by_value(id: &str, tx: Transaction<'static, Postgres>) -> Result<(), E> {
    let _ = tx;
    Ok(())
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id, outbox = tx)]
pub fn not_async(id: &str, tx: &mut Transaction<'_, Postgres>) -> Result<(), E> {
    let _ = tx;
    Ok(())
}

fn main() {}
