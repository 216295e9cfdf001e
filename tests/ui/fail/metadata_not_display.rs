// syntax: accepted
//! Class 5: a metadata value that is not `Display` is reported at the value.
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

pub struct Region;

#[saga_step(OrderSaga, ReserveStock, saga_id = id, metadata(region = Region))]
fn reserve(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

fn main() {}
