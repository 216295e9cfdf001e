// syntax: rejected
use saga_tracker::Saga;

#[derive(Saga)]
pub enum WithFields {
    #[step(compensable, retries = 3)]
    ReserveStock(u32),
    Charge = 5,
    #[step(name = "charge")]
    ChargeAgain,
}

#[derive(Saga)]
pub struct NotAnEnum;

fn main() {}
