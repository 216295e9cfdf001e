// syntax: accepted
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

#[saga_step(OrderSag, ReserveStock, saga_id = id)]
fn misspelled_saga(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

#[saga_step(OrderSaga, ReserveStok, saga_id = id)]
fn misspelled_step(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

fn main() {}
