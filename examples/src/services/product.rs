//! The product (stock) service: reserves stock for an order, releases it when the saga is compensated.

use std::collections::HashMap;
use std::sync::Mutex;

use saga_tracker::{Saga, saga_compensation, saga_service, saga_step};

use super::{answering, reply_error, simulate_work, unknown_command};
use crate::saga::{
    CommandMsg, LEGACY_SKU, OrderSaga, Phase, REGULAR_SKUS, ReplyError, ServiceName,
};

/// Units of each product in stock when the service starts.
pub const INITIAL_STOCK: u64 = 1_000_000;

/// Stock levels and the reservations held for sagas.
#[derive(Debug)]
pub struct Stock {
    inner: Mutex<StockInner>,
}

#[derive(Debug)]
struct StockInner {
    available: HashMap<String, u64>,
    reservations: HashMap<String, Reservation>,
}

impl Default for Stock {
    fn default() -> Self {
        let available = REGULAR_SKUS
            .iter()
            .chain([&LEGACY_SKU])
            .map(|sku| (sku.to_string(), INITIAL_STOCK))
            .collect();
        Stock {
            inner: Mutex::new(StockInner {
                available,
                reservations: HashMap::new(),
            }),
        }
    }
}

impl Stock {
    /// Units of `sku` available (not reserved).
    pub fn available(&self, sku: &str) -> Option<u64> {
        self.inner
            .lock()
            .ok()
            .and_then(|s| s.available.get(sku).copied())
    }
}

/// Stock held for one saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The product.
    pub sku: String,
    /// How many units.
    pub qty: u32,
}

/// Why the stock could not be reserved or released.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    /// The product is not sold here.
    #[error("unknown product {0}")]
    UnknownSku(String),
    /// Not enough units.
    #[error("only {available} x {sku} left, order needs {wanted}")]
    OutOfStock {
        /// The product.
        sku: String,
        /// Units left.
        available: u64,
        /// Units wanted.
        wanted: u32,
    },
    /// The legacy warehouse's ledger does not take releases.
    #[error("warehouse legacy-1 is in stock-take: cannot release {qty} x {sku}")]
    LedgerReadOnly {
        /// The product.
        sku: String,
        /// Units that stay reserved.
        qty: u32,
    },
    /// Nothing is reserved for the saga.
    #[error("no stock reserved for saga {0}")]
    NoReservation(String),
    /// `--outbox`: the database failed (the step's transaction rolls back).
    #[error("database: {0}")]
    Database(String),
    /// The stock table is unusable (a handler panicked while holding it).
    #[error("stock table poisoned")]
    Poisoned,
}

/// Reserves the order's stock.
#[saga_step(OrderSaga, ReserveStock, saga_id = cmd.saga_id, order_id = cmd.order_id)]
pub async fn reserve_stock(stock: &Stock, cmd: &CommandMsg) -> Result<Reservation, StockError> {
    simulate_work(&cmd.saga_id, "reserve_stock", 2).await;
    let mut inner = stock.inner.lock().map_err(|_| StockError::Poisoned)?;
    let line = &cmd.line;
    let available = inner
        .available
        .get_mut(&line.sku)
        .ok_or_else(|| StockError::UnknownSku(line.sku.clone()))?;
    if *available < u64::from(line.qty) {
        return Err(StockError::OutOfStock {
            sku: line.sku.clone(),
            available: *available,
            wanted: line.qty,
        });
    }
    *available -= u64::from(line.qty);
    let reservation = Reservation {
        sku: line.sku.clone(),
        qty: line.qty,
    };
    inner
        .reservations
        .insert(cmd.saga_id.clone(), reservation.clone());
    Ok(reservation)
}

/// Releases the stock reserved for a saga.
#[saga_compensation(OrderSaga, ReserveStock)]
pub async fn release_stock(
    stock: &Stock,
    #[saga_id] saga_id: &str,
    qty: u32,
) -> Result<(), StockError> {
    simulate_work(saga_id, "release_stock", 2).await;
    let mut inner = stock.inner.lock().map_err(|_| StockError::Poisoned)?;
    let reservation = inner
        .reservations
        .get(saga_id)
        .cloned()
        .ok_or_else(|| StockError::NoReservation(saga_id.to_owned()))?;
    if reservation.sku == LEGACY_SKU {
        return Err(StockError::LedgerReadOnly {
            sku: reservation.sku,
            qty,
        });
    }
    inner.reservations.remove(saga_id);
    if let Some(available) = inner.available.get_mut(&reservation.sku) {
        *available += u64::from(reservation.qty.min(qty));
    }
    Ok(())
}

saga_service! {
    /// The product (stock) service.
    pub ProductService {
        step OrderSaga::ReserveStock => reserve_stock,
        compensate OrderSaga::ReserveStock => release_stock,
    }
}

/// Runs the product handler for `cmd`.
pub async fn handle(stock: &Stock, cmd: &CommandMsg) -> Result<(), ReplyError> {
    match (
        OrderSaga::ALL
            .into_iter()
            .find(|s| s.wire_name() == cmd.step),
        cmd.phase,
    ) {
        (Some(OrderSaga::ReserveStock), Phase::Execute) => reserve_stock(stock, cmd)
            .await
            .map(drop)
            .map_err(|e| reply_error(&e)),
        (Some(OrderSaga::ReserveStock), Phase::Compensate) => {
            answering(cmd, release_stock(stock, &cmd.saga_id, cmd.line.qty))
                .await
                .map_err(|e| reply_error(&e))
        }
        _ => Err(unknown_command(ServiceName::Product, cmd)),
    }
}
