//! Class 3: associated fns just work, with or without `self`, sync or async, with no extra key; a handler may be
//! named like a module or a type in scope; handlers are wired by the path to where they are defined.
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

pub struct Cmd {
    pub saga_id: String,
}

pub struct Service {
    region: String,
}

impl Service {
    /// An associated fn without `self` and without `Self`: no `method` key.
    #[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id)]
    pub async fn handle(cmd: Cmd) -> Result<u32, E> {
        Ok(cmd.saga_id.len() as u32)
    }

    /// A sync one.
    #[saga_step(OrderSaga, ChargePayment, saga_id = id)]
    pub fn charge(id: &str) -> Result<(), E> {
        Ok(())
    }

    /// A method with `self`.
    #[saga_step(OrderSaga, ChargePayment, saga_id = cmd.saga_id, metadata(region = self.region))]
    pub async fn charge_in_region(&self, cmd: &Cmd) -> Result<(), E> {
        Service::charge(&cmd.saga_id)
    }
}

/// A module named like the handler below.
pub mod reserve_stock {
    pub const ONE: u32 = 1;
}

/// A type named like the handler below.
#[allow(non_camel_case_types)]
pub struct charge_payment {}

#[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id)]
pub async fn reserve_stock(cmd: Cmd) -> Result<u32, E> {
    Service::handle(cmd).await.map(|n| n + reserve_stock::ONE)
}

#[saga_step(OrderSaga, ChargePayment, saga_id = id)]
pub fn charge_payment(id: &str) -> Result<(), E> {
    let _ = charge_payment {};
    Service::charge(id)
}

pub mod services {
    use super::OrderSaga;
    use saga_tracker::saga_service;

    saga_service! {
        pub Orders {
            step OrderSaga::ReserveStock => super::reserve_stock,
            step OrderSaga::ChargePayment => crate::charge_payment,
        }
    }
}

saga_service! {
    pub Here {
        step OrderSaga::ReserveStock => reserve_stock,
        step OrderSaga::ChargePayment => self::charge_payment,
    }
}

fn main() {
    assert!(services::Orders::verify().is_ok());
    assert!(Here::verify().is_ok());
    assert_eq!(Here::descriptors()[0].fn_name, "reserve_stock");
    let svc = Service { region: "eu".into() };
    let cmd = Cmd { saga_id: "s-1".into() };
    let run = futures::executor::block_on(async {
        svc.charge_in_region(&cmd).await.is_ok() && reserve_stock(cmd).await.is_ok()
    });
    assert!(run);
}
