// syntax: accepted
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn sync_body(id: &str) -> Result<u32, std::fmt::Error> {
    let n: u32 = "not a number";
    Ok(n)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
async fn async_body(id: &str) -> Result<u32, std::fmt::Error> {
    Ok(id)
}

fn main() {}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn sync_tail(id: &str) -> Result<u32, std::fmt::Error> {
    Ok(id)
}
