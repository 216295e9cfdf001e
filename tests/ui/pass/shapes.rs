//! Every supported shape of a step fn.
use std::fmt::Display;

use saga_tracker::{Saga, SagaContext, saga_compensation, saga_step};

#[derive(Saga)]
pub enum OrderSaga {
    #[step(compensable)]
    ReserveStock,
    ChargePayment,
}

#[derive(Debug)]
pub struct StockError;
impl Display for StockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stock")
    }
}
pub struct DbError;
impl From<DbError> for StockError {
    fn from(_: DbError) -> Self {
        StockError
    }
}
pub struct Cmd {
    pub saga_id: String,
}
impl SagaContext for Cmd {
    fn saga_id(&self) -> &str {
        &self.saga_id
    }
}

/// Docs and attributes stay on the fn.
#[must_use]
#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
pub fn sync_fn(id: &str, fail: bool) -> Result<u32, StockError> {
    let n: Result<u32, DbError> = if fail { Err(DbError) } else { Ok(1) };
    if n.is_err() {
        return Err(StockError);
    }
    Ok(n?)
}

#[saga_step(OrderSaga, ReserveStock, saga_id = id)]
pub async fn async_fn(id: String) -> Result<(), StockError> {
    let _ = async { 1 }.await;
    Err::<(), DbError>(DbError)?;
    Ok(())
}

#[saga_step(OrderSaga, ChargePayment)]
pub fn from_context(cmd: &Cmd) -> Result<impl Display, StockError> {
    Ok(cmd.saga_id.len())
}

#[saga_step(OrderSaga, ChargePayment, saga_id = id)]
pub fn generic<'a, T: Display + ?Sized, E>(id: &'a str, value: &'a T) -> Result<&'a T, E>
where
    E: Display,
{
    Ok(value)
}

#[saga_compensation(OrderSaga, ReserveStock)]
pub async fn compensate(#[saga_id] saga: &str) -> Result<(), StockError> {
    Ok(())
}

pub struct Svc {
    pub n: u32,
}

impl Svc {
    #[saga_step(OrderSaga, ChargePayment, saga_id = id)]
    pub fn by_ref(&self, id: &str) -> Result<&u32, StockError> {
        Ok(&self.n)
    }
    #[saga_step(OrderSaga, ChargePayment, saga_id = id)]
    pub fn by_mut(&mut self, id: &str) -> Result<(), StockError> {
        self.n += 1;
        Ok(())
    }
    #[saga_step(OrderSaga, ChargePayment, saga_id = id)]
    pub async fn by_value(self, id: u64) -> Result<Self, StockError> {
        Ok(self)
    }
    #[saga_step(OrderSaga, ChargePayment, saga_id = cmd.saga_id, method)]
    pub fn associated(cmd: &Cmd) -> Result<u32, StockError> {
        Ok(0)
    }
    #[saga_step(OrderSaga, ChargePayment, saga_id = cmd.saga_id)]
    pub fn constructor(cmd: &Cmd) -> Result<Self, StockError> {
        Ok(Svc { n: 0 })
    }
}

pub trait Payments {
    fn pay(&self, cmd: &Cmd) -> impl Future<Output = Result<u32, StockError>> + Send;
    #[saga_step(OrderSaga, ChargePayment)]
    fn default_method(&self, cmd: &Cmd) -> Result<u32, StockError> {
        Ok(1)
    }
}

impl Payments for Svc {
    #[saga_step(OrderSaga, ChargePayment)]
    async fn pay(&self, cmd: &Cmd) -> Result<u32, StockError> {
        Ok(self.n)
    }
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let svc = Svc { n: 1 };
    let cmd = Cmd { saga_id: "s".into() };
    assert_send(svc.pay(&cmd));
    assert_send(async_fn("s".into()));
    let _ = sync_fn("s", false);
    let _ = generic::<str, StockError>("s", "v");
}
