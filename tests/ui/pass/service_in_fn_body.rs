//! The doctest shape (class 4): saga, handlers and service all inside a fn body.
fn main() {
    use saga_tracker::{Saga, saga_compensation, saga_service, saga_step};

    #[derive(Saga)]
    enum OrderSaga {
        #[step(compensable)]
        ReserveStock,
    }

    #[saga_step(OrderSaga, ReserveStock, saga_id = id)]
    fn reserve_stock(id: &str) -> Result<(), std::fmt::Error> {
        Ok(())
    }

    #[saga_compensation(OrderSaga, ReserveStock, saga_id = id)]
    fn release_stock(id: &str) -> Result<(), std::fmt::Error> {
        Ok(())
    }

    saga_service! {
        StockService {
            step OrderSaga::ReserveStock => reserve_stock,
            compensate OrderSaga::ReserveStock => release_stock,
        }
    }

    assert!(StockService::verify().is_ok());
    assert_eq!(StockService::descriptors()[1].fn_name, "release_stock");
    assert!(reserve_stock("s").is_ok());
}
