//! Exact event sequences recorded by `#[saga_step]` / `#[saga_compensation]` for every supported shape.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::FutureExt as _;
use saga_tracker::{SagaEvent, StepStatus, saga_compensation, saga_step, with_default};
use saga_tracker_tests::{OrderSaga, Recorder};

use StepStatus::{
    Compensated, CompensationFailed, CompensationStarted, Failed, Started, Succeeded,
};

/// The stock service's error.
#[derive(Debug, PartialEq)]
pub enum StockError {
    /// Not enough items.
    OutOfStock(u32),
    /// A lower layer failed.
    Db(String),
}

impl fmt::Display for StockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StockError::OutOfStock(n) => write!(f, "only {n} left"),
            StockError::Db(m) => write!(f, "db: {m}"),
        }
    }
}

/// A lower-layer error, converted by `?`.
#[derive(Debug)]
pub struct DbError;

impl From<DbError> for StockError {
    fn from(_: DbError) -> Self {
        StockError::Db("connection reset".into())
    }
}

fn db(ok: bool) -> Result<u32, DbError> {
    if ok { Ok(7) } else { Err(DbError) }
}

/// A command carrying the ids.
pub struct ReserveCmd {
    /// The saga.
    pub saga_id: String,
    /// The order.
    pub order_id: String,
    /// How many.
    pub qty: u32,
    /// Fail the database call.
    pub db_ok: bool,
}

fn cmd(saga: &str, qty: u32) -> ReserveCmd {
    ReserveCmd {
        saga_id: saga.into(),
        order_id: format!("order-{saga}"),
        qty,
        db_ok: true,
    }
}

/// Sync step using `?` and an early return.
#[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id, order_id = cmd.order_id)]
fn reserve_stock(cmd: &ReserveCmd) -> Result<u32, StockError> {
    if cmd.qty == 0 {
        return Ok(0);
    }
    if cmd.qty == 99 {
        panic!("stock table corrupted for {}", cmd.saga_id);
    }
    let available = db(cmd.db_ok)?;
    if cmd.qty > available {
        return Err(StockError::OutOfStock(available));
    }
    Ok(available - cmd.qty)
}

/// Async step.
#[saga_step(OrderSaga, ChargePayment, saga_id = saga_id)]
async fn charge(saga_id: &str, amount: u64) -> Result<u64, StockError> {
    futures::future::ready(()).await;
    match amount {
        0 => Err(StockError::Db("no amount".into())),
        13 => panic!("unlucky amount"),
        666 => {
            futures::future::pending::<()>().await;
            Ok(amount)
        }
        _ => Ok(amount * 100),
    }
}

/// Compensation of ReserveStock.
#[saga_compensation(OrderSaga, ReserveStock)]
fn release_stock(#[saga_id] saga_id: &str, qty: u32) -> Result<(), StockError> {
    if qty > 10 {
        Err(StockError::OutOfStock(qty))
    } else {
        Ok(())
    }
}

/// Async compensation of ChargePayment.
#[saga_compensation(OrderSaga, ChargePayment, saga_id = saga_id)]
async fn refund(saga_id: String, ok: bool) -> Result<(), StockError> {
    if ok {
        Ok(())
    } else {
        Err(StockError::Db(format!("refund of {saga_id} refused")))
    }
}

fn statuses(events: &[SagaEvent]) -> Vec<(&str, StepStatus)> {
    events.iter().map(|e| (e.step.as_str(), e.status)).collect()
}

#[test]
fn success_records_started_then_succeeded_with_ids_and_duration() {
    let rec = Recorder::new("product-service");
    let out = with_default(&rec.tracker, || reserve_stock(&cmd("s-1", 2)));
    assert_eq!(out, Ok(5));
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [("reserve_stock", Started), ("reserve_stock", Succeeded)]
    );
    for e in &events {
        assert_eq!(e.saga_id, "s-1");
        assert_eq!(e.saga_type, "OrderSaga");
        assert_eq!(e.order_id.as_deref(), Some("order-s-1"));
        assert_eq!(e.service, "product-service");
        assert_eq!(e.attempt, 1);
        assert_eq!(e.error, None);
    }
    assert_eq!(events[0].duration_micros, None);
    assert!(events[1].duration_micros.is_some());
    assert_eq!(events[1].idempotency_key, "s-1:reserve_stock:SUCCEEDED:1");
}

#[test]
fn events_carry_the_steps_place_in_the_saga_declaration() {
    let rec = Recorder::new("product-service");
    with_default(&rec.tracker, || {
        let _ = reserve_stock(&cmd("s-shape", 2));
        let _ = release_stock("s-shape", 1);
    });
    let events = rec.events();
    assert_eq!(events.len(), 4);
    for e in &events {
        // ReserveStock is the first of OrderSaga's three declared steps, and compensable.
        assert_eq!(
            (e.step_index, e.step_count, e.compensable),
            (Some(0), Some(3), Some(true)),
            "{e:?}"
        );
    }
    let confirm_descriptor = saga_tracker::registry::descriptors_of("OrderSaga")
        .into_iter()
        .find(|d| d.step == "confirm");
    if let Some(d) = confirm_descriptor {
        assert_eq!((d.step_index, d.step_count, d.compensable), (2, 3, false));
    }
}

#[test]
fn err_records_failed_with_type_name_and_display() {
    let rec = Recorder::new("svc");
    let out = with_default(&rec.tracker, || reserve_stock(&cmd("s-2", 50)));
    assert_eq!(out, Err(StockError::OutOfStock(7)));
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [("reserve_stock", Started), ("reserve_stock", Failed)]
    );
    let error = events[1].error.as_ref().expect("FAILED carries an error");
    assert_eq!(error.kind, "StockError");
    assert_eq!(error.message, "only 7 left");
    assert!(events[1].duration_micros.is_some());
}

#[test]
fn question_mark_records_failed_with_the_converted_error() {
    let rec = Recorder::new("svc");
    let mut c = cmd("s-3", 1);
    c.db_ok = false;
    let out = with_default(&rec.tracker, || reserve_stock(&c));
    assert_eq!(out, Err(StockError::Db("connection reset".into())));
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [("reserve_stock", Started), ("reserve_stock", Failed)]
    );
    assert_eq!(
        events[1].error.as_ref().map(|e| e.message.as_str()),
        Some("db: connection reset")
    );
}

#[test]
fn early_return_records_succeeded() {
    let rec = Recorder::new("svc");
    let out = with_default(&rec.tracker, || reserve_stock(&cmd("s-4", 0)));
    assert_eq!(out, Ok(0));
    assert_eq!(
        statuses(&rec.events()),
        [("reserve_stock", Started), ("reserve_stock", Succeeded)]
    );
}

#[test]
fn sync_panic_records_failed_panic_then_resumes_the_same_panic() {
    let rec = Recorder::new("svc");
    let caught = with_default(&rec.tracker, || {
        catch_unwind(AssertUnwindSafe(|| reserve_stock(&cmd("s-5", 99))))
    });
    let payload = caught.expect_err("the panic propagates");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("stock table corrupted for s-5")
    );
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [("reserve_stock", Started), ("reserve_stock", Failed)]
    );
    let error = events[1].error.as_ref().expect("error");
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("panic", "stock table corrupted for s-5")
    );
}

#[test]
fn async_success_and_err() {
    let rec = Recorder::new("payment-service");
    let (ok, err) = with_default(&rec.tracker, || {
        futures::executor::block_on(async { (charge("s-6", 2).await, charge("s-7", 0).await) })
    });
    assert_eq!(
        (ok, err),
        (Ok(200), Err(StockError::Db("no amount".into())))
    );
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [
            ("charge_payment", Started),
            ("charge_payment", Succeeded),
            ("charge_payment", Started),
            ("charge_payment", Failed)
        ]
    );
    assert_eq!(events[3].saga_id, "s-7");
    assert_eq!(
        events[3].error.as_ref().map(|e| e.message.as_str()),
        Some("db: no amount")
    );
}

#[test]
fn async_panic_records_failed_panic_then_resumes() {
    let rec = Recorder::new("svc");
    let caught = with_default(&rec.tracker, || {
        futures::executor::block_on(AssertUnwindSafe(charge("s-8", 13)).catch_unwind())
    });
    let payload = caught.expect_err("the panic propagates");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"unlucky amount"));
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [("charge_payment", Started), ("charge_payment", Failed)]
    );
    let error = events[1].error.as_ref().expect("error");
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("panic", "unlucky amount")
    );
}

#[test]
fn dropped_future_records_failed_cancelled() {
    let rec = Recorder::new("svc");
    let polled = with_default(&rec.tracker, || charge("s-9", 666).now_or_never());
    assert_eq!(polled, None, "the step is still pending when dropped");
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [("charge_payment", Started), ("charge_payment", Failed)]
    );
    assert_eq!(
        events[1].error.as_ref().map(|e| e.kind.as_str()),
        Some("cancelled")
    );
}

#[test]
fn a_future_dropped_before_its_first_poll_records_nothing() {
    let rec = Recorder::new("svc");
    with_default(&rec.tracker, || drop(charge("s-10", 1)));
    assert_eq!(rec.events(), []);
}

#[test]
fn compensation_success_and_failure() {
    let rec = Recorder::new("svc");
    with_default(&rec.tracker, || {
        assert_eq!(release_stock("s-11", 1), Ok(()));
        assert!(release_stock("s-12", 11).is_err());
        futures::executor::block_on(async {
            assert_eq!(refund("s-13".into(), true).await, Ok(()));
            assert!(refund("s-14".into(), false).await.is_err());
        });
    });
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [
            ("reserve_stock", CompensationStarted),
            ("reserve_stock", Compensated),
            ("reserve_stock", CompensationStarted),
            ("reserve_stock", CompensationFailed),
            ("charge_payment", CompensationStarted),
            ("charge_payment", Compensated),
            ("charge_payment", CompensationStarted),
            ("charge_payment", CompensationFailed),
        ]
    );
    assert_eq!(
        events[3].error.as_ref().map(|e| e.message.as_str()),
        Some("only 11 left")
    );
    assert_eq!(
        events[7].error.as_ref().map(|e| e.message.as_str()),
        Some("db: refund of s-14 refused")
    );
    assert_eq!(events[7].saga_id, "s-14");
}

/// A generic step.
#[saga_step(OrderSaga, ConfirmOrder, saga_id = id)]
fn confirm<T: fmt::Display + Clone, E: fmt::Display>(
    id: &str,
    value: T,
    fail: Option<E>,
) -> Result<T, E> {
    match fail {
        Some(e) => Err(e),
        None => Ok(value.clone()),
    }
}

#[test]
fn generic_step() {
    let rec = Recorder::new("svc");
    with_default(&rec.tracker, || {
        assert_eq!(confirm::<_, String>("s-15", 5u8, None), Ok(5));
        assert!(confirm("s-16", "x", Some(std::fmt::Error)).is_err());
    });
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [
            ("confirm", Started),
            ("confirm", Succeeded),
            ("confirm", Started),
            ("confirm", Failed)
        ]
    );
    assert_eq!(
        events[3].error.as_ref().map(|e| e.kind.as_str()),
        Some("Error")
    );
}

/// A service trait with an async step.
pub trait Payments {
    /// Charges.
    fn charge(
        &self,
        saga_id: &str,
        cents: u64,
    ) -> impl Future<Output = Result<u64, StockError>> + Send;
}

/// An implementation.
pub struct Gateway {
    /// The fee.
    pub fee: u64,
}

impl Payments for Gateway {
    #[saga_step(OrderSaga, ChargePayment, saga_id = saga_id)]
    async fn charge(&self, saga_id: &str, cents: u64) -> Result<u64, StockError> {
        if cents < self.fee {
            Err(StockError::OutOfStock(0))
        } else {
            Ok(cents - self.fee)
        }
    }
}

/// Stock held in memory.
pub struct Store {
    /// Items.
    pub items: u32,
}

impl Store {
    /// A `&mut self` method.
    #[saga_step(OrderSaga, ReserveStock, saga_id = saga)]
    pub fn take(&mut self, saga: &str, n: u32) -> Result<u32, StockError> {
        self.items = self
            .items
            .checked_sub(n)
            .ok_or(StockError::OutOfStock(self.items))?;
        Ok(self.items)
    }

    /// A `self` method.
    #[saga_step(OrderSaga, ConfirmOrder, saga_id = saga)]
    pub fn close(self, saga: &str) -> Result<u32, StockError> {
        Ok(self.items)
    }
}

#[test]
fn trait_and_inherent_methods() {
    let rec = Recorder::new("svc");
    with_default(&rec.tracker, || {
        let g = Gateway { fee: 5 };
        futures::executor::block_on(async {
            assert_eq!(g.charge("s-17", 10).await, Ok(5));
            assert!(g.charge("s-18", 1).await.is_err());
        });
        let mut store = Store { items: 3 };
        assert_eq!(store.take("s-19", 2), Ok(1));
        assert!(store.take("s-20", 2).is_err());
        assert_eq!(store.close("s-21"), Ok(1));
    });
    let events = rec.events();
    assert_eq!(
        statuses(&events),
        [
            ("charge_payment", Started),
            ("charge_payment", Succeeded),
            ("charge_payment", Started),
            ("charge_payment", Failed),
            ("reserve_stock", Started),
            ("reserve_stock", Succeeded),
            ("reserve_stock", Started),
            ("reserve_stock", Failed),
            ("confirm", Started),
            ("confirm", Succeeded),
        ]
    );
    let sagas: Vec<&str> = events.iter().map(|e| e.saga_id.as_str()).collect();
    assert_eq!(
        sagas,
        [
            "s-17", "s-17", "s-18", "s-18", "s-19", "s-19", "s-20", "s-20", "s-21", "s-21"
        ]
    );
}

#[test]
fn without_a_tracker_events_are_counted_not_lost_silently() {
    let before = saga_tracker::unrecorded_events();
    assert_eq!(reserve_stock(&cmd("s-22", 1)), Ok(6));
    assert!(saga_tracker::unrecorded_events() >= before + 2);
}
