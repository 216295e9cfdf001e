// syntax: accepted
//! A handler is wired by the path to the module where it is defined: a name brought in with `use` is not
//! followed (it cannot be told apart from an un-annotated fn brought in the same way).
use saga_tracker::{Saga, saga_service};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

pub mod handlers {
    use super::OrderSaga;
    use saga_tracker::saga_step;

    #[saga_step(OrderSaga, ReserveStock, saga_id = id)]
    pub fn reserve_stock(id: &str) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

use handlers::reserve_stock;

saga_service! {
    pub ProductService {
        step OrderSaga::ReserveStock => reserve_stock,
    }
}

saga_service! {
    pub Fixed {
        step OrderSaga::ReserveStock => handlers::reserve_stock,
    }
}

fn main() {}
