//! Class 1: a local un-annotated fn shadows a glob-imported annotated fn of the same name. The marker the
//! compile-time check finds comes with the glob, so the build cannot tell the two fns apart (Rust compares fn
//! item types only at run time); `verify()` follows the value the service names and reports it.
use saga_tracker::registry::VerifyError;
use saga_tracker::{Saga, saga_service, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

pub mod annotated {
    use super::OrderSaga;
    use saga_tracker::saga_step;

    #[saga_step(OrderSaga, ReserveStock, saga_id = id)]
    pub fn reserve_stock(id: &str) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

pub mod wiring {
    use super::OrderSaga;
    use super::annotated::*;
    use saga_tracker::saga_service;

    /// Not annotated: records nothing.
    pub fn reserve_stock(_id: &str) -> Result<(), std::fmt::Error> {
        Ok(())
    }

    saga_service! {
        pub StockService {
            step OrderSaga::ReserveStock => reserve_stock,
        }
    }
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
fn honest(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

saga_service! {
    pub HonestService {
        step OrderSaga::ReserveStock => honest,
    }
}

fn main() {
    match wiring::StockService::verify() {
        Err(VerifyError::NotAnnotated { path, .. }) => assert_eq!(path, "reserve_stock"),
        other => panic!("expected NotAnnotated, got {other:?}"),
    }
    assert!(HonestService::verify().is_ok());
}
