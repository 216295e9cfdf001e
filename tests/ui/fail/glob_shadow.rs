// syntax: accepted
//! Class 1: a local un-annotated fn shadows a glob-imported annotated fn of the same name. The check follows the
//! fn the service's path names (where it is defined), so the annotated fn brought in by the glob does not
//! satisfy it.
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
    #[allow(unused_imports)]
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

pub mod explicit_import {
    use super::OrderSaga;
    use saga_tracker::saga_service;

    mod unannotated {
        pub fn reserve_stock(_id: &str) -> Result<(), std::fmt::Error> {
            Ok(())
        }
    }
    #[allow(unused_imports)]
    use super::annotated::*;
    use unannotated::reserve_stock;

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

fn main() {}
