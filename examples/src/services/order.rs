//! The order service's handlers: create the order, confirm it, cancel it when the saga is compensated.
//! (The saga itself is driven by [`crate::orchestrator`], which runs in the order service's process.)

use std::collections::HashMap;
use std::sync::Mutex;

use saga_tracker::{Saga, saga_compensation, saga_service, saga_step};

use super::{answering, reply_error, simulate_work, unknown_command};
use crate::saga::{CommandMsg, OrderSaga, Phase, ReplyError, ServiceName};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Created, saga running.
    Pending,
    /// Paid and confirmed.
    Confirmed,
    /// Cancelled by the saga's compensation.
    Cancelled,
}

/// The orders this service knows.
#[derive(Debug, Default)]
pub struct Orders {
    inner: Mutex<HashMap<String, OrderStatus>>,
}

impl Orders {
    /// The status of `order_id`.
    pub fn status(&self, order_id: &str) -> Option<OrderStatus> {
        self.inner
            .lock()
            .ok()
            .and_then(|o| o.get(order_id).copied())
    }
}

/// Why an order could not be created, confirmed or cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The order id is taken.
    #[error("order {0} already exists")]
    AlreadyExists(String),
    /// No such order.
    #[error("unknown order {0}")]
    UnknownOrder(String),
    /// The order is not pending any more.
    #[error("order {order_id} is {status:?}, not pending")]
    NotPending {
        /// The order.
        order_id: String,
        /// Its status.
        status: OrderStatus,
    },
    /// `--outbox`: the database failed (the step's transaction rolls back).
    #[error("database: {0}")]
    Database(String),
    /// The order table is unusable (a handler panicked while holding it).
    #[error("order table poisoned")]
    Poisoned,
}

fn transition(orders: &Orders, order_id: &str, to: OrderStatus) -> Result<(), OrderError> {
    let mut inner = orders.inner.lock().map_err(|_| OrderError::Poisoned)?;
    let status = inner
        .get_mut(order_id)
        .ok_or_else(|| OrderError::UnknownOrder(order_id.to_owned()))?;
    if *status != OrderStatus::Pending {
        return Err(OrderError::NotPending {
            order_id: order_id.to_owned(),
            status: *status,
        });
    }
    *status = to;
    Ok(())
}

/// Records the order as pending.
#[saga_step(OrderSaga, CreateOrder, saga_id = cmd.saga_id, order_id = cmd.order_id)]
pub async fn create_order(orders: &Orders, cmd: &CommandMsg) -> Result<(), OrderError> {
    simulate_work(&cmd.saga_id, "create_order", 1).await;
    let mut inner = orders.inner.lock().map_err(|_| OrderError::Poisoned)?;
    if inner.contains_key(&cmd.order_id) {
        return Err(OrderError::AlreadyExists(cmd.order_id.clone()));
    }
    inner.insert(cmd.order_id.clone(), OrderStatus::Pending);
    Ok(())
}

/// Cancels a pending order.
#[saga_compensation(OrderSaga, CreateOrder)]
pub async fn cancel_order(
    orders: &Orders,
    #[saga_id] saga_id: &str,
    order_id: &str,
) -> Result<(), OrderError> {
    simulate_work(saga_id, "cancel_order", 1).await;
    transition(orders, order_id, OrderStatus::Cancelled)
}

/// Confirms a paid order.
#[saga_step(OrderSaga, ConfirmOrder, saga_id = cmd.saga_id, order_id = cmd.order_id)]
pub async fn confirm_order(orders: &Orders, cmd: &CommandMsg) -> Result<(), OrderError> {
    simulate_work(&cmd.saga_id, "confirm_order", 1).await;
    transition(orders, &cmd.order_id, OrderStatus::Confirmed)
}

saga_service! {
    /// The order service.
    pub OrderService {
        step OrderSaga::CreateOrder => create_order,
        compensate OrderSaga::CreateOrder => cancel_order,
        step OrderSaga::ConfirmOrder => confirm_order,
    }
}

/// Runs the order handler for `cmd`.
pub async fn handle(orders: &Orders, cmd: &CommandMsg) -> Result<(), ReplyError> {
    match (
        OrderSaga::ALL
            .into_iter()
            .find(|s| s.wire_name() == cmd.step),
        cmd.phase,
    ) {
        (Some(OrderSaga::CreateOrder), Phase::Execute) => {
            create_order(orders, cmd).await.map_err(|e| reply_error(&e))
        }
        (Some(OrderSaga::CreateOrder), Phase::Compensate) => {
            answering(cmd, cancel_order(orders, &cmd.saga_id, &cmd.order_id))
                .await
                .map_err(|e| reply_error(&e))
        }
        (Some(OrderSaga::ConfirmOrder), Phase::Execute) => confirm_order(orders, cmd)
            .await
            .map_err(|e| reply_error(&e)),
        _ => Err(unknown_command(ServiceName::Order, cmd)),
    }
}
