// syntax: rejected
//! Class 5: the saga type and the step given in the wrong order.
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

#[saga_step(ReserveStock, OrderSaga, saga_id = id)]
fn reserve(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

fn main() {}
