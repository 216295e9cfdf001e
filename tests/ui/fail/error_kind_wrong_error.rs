// syntax: accepted
//! Class 5: an `error_kind` classifier for another error type is reported at the classifier.
use saga_tracker::{Saga, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    ReserveStock,
}

fn io_kind(e: &std::io::Error) -> &'static str {
    let _ = e;
    "io"
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id, error_kind = io_kind)]
fn reserve(id: &str) -> Result<(), std::fmt::Error> {
    Ok(())
}

fn main() {}
