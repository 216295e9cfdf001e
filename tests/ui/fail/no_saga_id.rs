// syntax: accepted
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

pub struct Cmd {
    pub qty: u32,
}

#[saga_step(OrderSaga, ReserveStock)]
fn no_context_argument(cmd: &Cmd, qty: u32) -> Result<(), std::fmt::Error> {
    Ok(())
}

#[saga_step(OrderSaga, ReserveStock)]
fn no_arguments() -> Result<(), std::fmt::Error> {
    Ok(())
}

fn main() {}
