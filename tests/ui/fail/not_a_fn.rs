// syntax: accepted
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
const fn at_compile_time(id: &str) -> Result<(), ()> {
    Ok(())
}

#[saga_step(OrderSaga, ReserveStock)]
struct NotAFn;

fn main() {}
