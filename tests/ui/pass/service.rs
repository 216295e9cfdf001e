//! A service wiring handlers defined in several places.
use saga_tracker::{Saga, saga_compensation, saga_step};

#[derive(Saga)]
#[saga(name = "order")]
pub enum OrderSaga {
    #[step(compensable)]
    ReserveStock,
    #[step(name = "charge")]
    ChargePayment,
}

#[derive(Debug)]
pub struct E;
impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("e")
    }
}

pub mod handlers {
    use super::*;
    #[saga_step(OrderSaga, ReserveStock, saga_id = id)]
    pub async fn reserve_stock(id: &str) -> Result<(), E> {
        Ok(())
    }
    #[saga_compensation(OrderSaga, ReserveStock, saga_id = id)]
    pub(crate) fn release_stock(id: &str) -> Result<(), E> {
        Ok(())
    }
}

#[saga_step(OrderSaga, ChargePayment, saga_id = id)]
fn charge(id: &str) -> Result<(), E> {
    Ok(())
}

mod services {
    use super::OrderSaga;
    use saga_tracker::saga_service;

    saga_service! {
        /// Stock.
        pub ProductService {
            step OrderSaga::ReserveStock => crate::handlers::reserve_stock,
            compensate OrderSaga::ReserveStock => super::handlers::release_stock,
        }
    }

    saga_service! {
        pub(crate) PaymentService {
            step OrderSaga::ChargePayment => super::charge,
        }
    }
}

fn main() {
    assert_eq!(services::ProductService::descriptors().len(), 2);
    assert_eq!(services::PaymentService::descriptors()[0].step, "charge");
    assert_eq!(services::PaymentService::descriptors()[0].saga_type, "order");
    assert!(services::ProductService::verify().is_ok());
}
