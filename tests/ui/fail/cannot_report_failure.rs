// syntax: accepted
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn returns_a_number(id: &str) -> u32 {
    1
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
async fn returns_nothing(id: &str) {}

fn main() {}
