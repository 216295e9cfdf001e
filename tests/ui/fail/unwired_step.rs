// syntax: rejected
use saga_tracker::{Saga, saga_service, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    #[step(compensable)]
    ReserveStock,
    ConfirmOrder,
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn reserve_stock(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

saga_service! {
    pub StockService {
        step OrderSaga::ReserveStock => reserve_stock,
    }
}

saga_service! {
    pub ConfirmService {
        step OrderSaga::ConfirmOrder,
    }
}

fn main() {}
