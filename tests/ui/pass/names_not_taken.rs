//! The macros take no name a user may have (class 3): a handler may share its name with a module or a type in
//! the same scope, and associated fns need no extra key when `self` or `Self` shows in their signature.
use saga_tracker::{Saga, saga_service, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
    ChargePayment,
}

#[derive(Debug)]
pub struct E;
impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("e")
    }
}

/// A module named like the handler.
pub mod reserve_stock {
    pub const QTY: u32 = 1;
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
pub fn reserve_stock(id: &str) -> Result<u32, E> {
    Ok(reserve_stock::QTY)
}

/// A type named like a handler.
#[allow(non_camel_case_types)]
pub struct charge_payment {}

#[saga_step(OrderSaga, ChargePayment, saga_id = id)]
pub fn charge_payment(id: &str) -> Result<(), E> {
    let _ = charge_payment {};
    Ok(())
}

pub struct Handlers {
    id: String,
}

impl Handlers {
    /// No receiver, `Self` in the signature.
    #[saga_step(OrderSaga, ReserveStock, saga_id = id)]
    pub fn create(id: &str) -> Result<Self, E> {
        Ok(Handlers { id: id.to_owned() })
    }

    /// No receiver and no `Self`: `method` says it is an associated fn.
    #[saga_step(OrderSaga, ChargePayment, saga_id = id, method)]
    pub fn charge(id: &str) -> Result<(), E> {
        Ok(())
    }
}

pub trait Charge {
    fn charge_twice(&self) -> Result<(), E>;
}

impl Charge for Handlers {
    #[saga_step(OrderSaga, ChargePayment, saga_id = self.id)]
    fn charge_twice(&self) -> Result<(), E> {
        Handlers::charge(&self.id)
    }
}

saga_service! {
    pub Service {
        step OrderSaga::ReserveStock => reserve_stock,
        step OrderSaga::ChargePayment => crate::charge_payment,
    }
}

fn main() {
    assert!(Service::verify().is_ok());
    assert_eq!(Handlers::create("s").map(|h| h.id).ok().as_deref(), Some("s"));
    assert!(Handlers::create("s").is_ok_and(|h| h.charge_twice().is_ok()));
}
