// syntax: accepted
use saga_tracker::{Saga, saga_service, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
    ChargePayment,
}

fn reserve_stock(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn charge_payment(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

saga_service! {
    pub ProductService {
        step OrderSaga::ReserveStock => reserve_stock,
        step OrderSaga::ChargePayment => charge_payment,
    }
}

fn main() {}
