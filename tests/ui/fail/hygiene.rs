// syntax: accepted
//! Class 4: `#[track_caller]` and a hand-written `-> impl Future` get an error saying what to write.
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

#[track_caller]
#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn tracked(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn hand_written_future(id: &str) -> impl std::future::Future<Output = Result<(), std::fmt::Error>> {
    async { Ok(()) }
}

fn main() {}
