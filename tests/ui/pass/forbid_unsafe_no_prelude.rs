//! A crate that forbids unsafe code and has no implicit prelude: the macros need neither (classes 2 and 4).
#![forbid(unsafe_code)]
#![no_implicit_prelude]

#[derive(::saga_tracker::Saga)]
pub enum OrderSaga {
    #[step(compensable)]
    ReserveStock,
    ChargePayment,
}

pub struct Cmd {
    pub saga_id: ::std::string::String,
}

impl ::saga_tracker::SagaContext for Cmd {
    fn saga_id(&self) -> &str {
        &self.saga_id
    }
}

#[::saga_tracker::saga_step(OrderSaga, ReserveStock, saga_id = id, metadata(region = id.len()))]
pub fn reserve_stock(id: &str) -> ::std::result::Result<(), ::std::fmt::Error> {
    ::std::result::Result::Ok(())
}

#[::saga_tracker::saga_compensation(OrderSaga, ReserveStock)]
pub async fn release_stock(cmd: &Cmd) -> ::std::result::Result<u32, ::std::fmt::Error> {
    ::std::result::Result::Ok(1)
}

pub struct Payments;

impl Payments {
    #[::saga_tracker::saga_step(OrderSaga, ChargePayment, saga_id = id)]
    pub fn charge(&self, id: &str) -> ::std::result::Result<(), ::std::fmt::Error> {
        ::std::result::Result::Ok(())
    }
}

#[::saga_tracker::saga_step(OrderSaga, ChargePayment, saga_id = id)]
fn charge(id: &str) -> ::std::result::Result<(), ::std::fmt::Error> {
    Payments.charge(id)
}

::saga_tracker::saga_service! {
    /// Stock.
    pub StockService {
        step OrderSaga::ReserveStock => reserve_stock,
        compensate OrderSaga::ReserveStock => self::release_stock,
        step OrderSaga::ChargePayment => charge,
    }
}

fn main() {
    ::std::assert!(StockService::verify().is_ok());
    ::std::assert_eq!(StockService::descriptors().len(), 3);
}
