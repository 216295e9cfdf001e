// syntax: rejected
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id, sagaid = id, order_id = id, order_id = id, metadata(a = 1, a = 2))]
fn all_reported_together(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

#[saga_step(OrderSaga, saga_id = id)]
fn missing_step(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn two_sources(#[saga_id] id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

fn main() {
    // The fn is still emitted on an error, so callers type-check.
    let _: Result<(), std::fmt::Error> = all_reported_together("s");
}
