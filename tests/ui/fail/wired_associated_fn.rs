// syntax: accepted
//! Class 3: a service wires free fns; wiring an associated fn says what to write.
use saga_tracker::{Saga, saga_service, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

pub struct Stock;

impl Stock {
    #[saga_step(OrderSaga, ReserveStock, saga_id = id)]
    pub fn reserve(&self, id: &str) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

saga_service! {
    pub StockService {
        step OrderSaga::ReserveStock => Stock::reserve,
    }
}

fn main() {}
