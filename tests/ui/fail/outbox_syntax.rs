// syntax: rejected
//! `outbox = ..` takes the name of a parameter, not an expression.
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

#[saga_step(OrderSaga, ReserveStock, saga_id = id, outbox = &mut tx)]
pub async fn reserve(id: &str, tx: &mut Transaction<'_, Postgres>) -> Result<(), E> {
    let _ = tx;
    Ok(())
}

fn main() {}
