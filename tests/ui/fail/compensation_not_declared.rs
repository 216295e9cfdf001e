// syntax: accepted
use saga_tracker::{Saga, saga_compensation};

#[derive(Saga)]
pub enum OrderSaga {
    #[step(compensable)]
    ReserveStock,
    ConfirmOrder,
}

#[saga_compensation(OrderSaga, ConfirmOrder, saga_id = id)]
fn undo_confirm(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

fn main() {}
