// syntax: accepted
//! Class 5: a saga type that is a plain enum (no `#[derive(Saga)]`) is reported at the type.
use saga_tracker::saga_step;

pub enum OrderSaga {
    ReserveStock,
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn reserve(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

fn main() {}
