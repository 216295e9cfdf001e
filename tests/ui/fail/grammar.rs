// syntax: rejected
//! Class 6: forms the checklist once accepted and the macros reject, each reported at its token.
use saga_tracker::{Saga, saga_compensation, saga_service, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    #[step(compensable)]
    ReserveStock,
}

#[saga_step(saga = OrderSaga, step = ReserveStock, saga_id = id)]
fn saga_key(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

#[saga_compensation(OrderSaga, "reserve_stock", saga_id = id)]
fn string_step(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

saga_service! {
    pub StockService {
        step OrderSaga::ReserveStock => saga_key,
        compensation OrderSaga::ReserveStock => string_step,
    }
}

saga_service! {
    pub A {
        step OrderSaga::ReserveStock => saga_key,
    }
    pub B {
        step OrderSaga::ReserveStock => saga_key,
    }
}

fn main() {}
