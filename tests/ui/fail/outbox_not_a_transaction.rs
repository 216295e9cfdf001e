// syntax: accepted
//! `outbox = ..` names a `&mut` parameter that is not a PostgreSQL transaction or connection.
use saga_tracker::{Saga, saga_step};

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

#[saga_step(OrderSaga, ReserveStock, saga_id = id, outbox = pool)]
pub async fn reserve(id: &str, pool: &mut sqlx::PgPool) -> Result<(), E> {
    let _ = pool;
    Ok(())
}

fn main() {}
