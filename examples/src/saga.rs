//! The `OrderSaga` declaration shared by the three services, and the command/reply messages they exchange
//! over Kafka (JSON).

use serde::{Deserialize, Serialize};

use saga_tracker::Saga;

/// The order saga: create the order, reserve its stock, charge the customer, confirm the order.
///
/// A failure at any step compensates the compensable steps that succeeded before it, newest first
/// (release the stock, cancel the order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Saga)]
#[saga(name = "OrderSaga")]
pub enum OrderSaga {
    /// The order service records the order as pending (compensation: cancel it).
    #[step(compensable)]
    CreateOrder,
    /// The product service reserves the stock (compensation: release it).
    #[step(compensable)]
    ReserveStock,
    /// The payment service charges the customer (compensation: refund).
    #[step(compensable)]
    ChargePayment,
    /// The order service confirms the order.
    ConfirmOrder,
}

impl OrderSaga {
    /// Every step, in saga order.
    pub const ALL: [OrderSaga; 4] = [
        OrderSaga::CreateOrder,
        OrderSaga::ReserveStock,
        OrderSaga::ChargePayment,
        OrderSaga::ConfirmOrder,
    ];

    /// The service that runs this step and its compensation.
    pub const fn service(self) -> ServiceName {
        match self {
            OrderSaga::CreateOrder | OrderSaga::ConfirmOrder => ServiceName::Order,
            OrderSaga::ReserveStock => ServiceName::Product,
            OrderSaga::ChargePayment => ServiceName::Payment,
        }
    }
}

/// The three services of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceName {
    /// Orders: runs the saga (orchestrator) and the order steps.
    Order,
    /// Products: stock reservations.
    Product,
    /// Payments: customer wallets.
    Payment,
}

impl ServiceName {
    /// All services.
    pub const ALL: [ServiceName; 3] = [
        ServiceName::Order,
        ServiceName::Product,
        ServiceName::Payment,
    ];

    /// The name recorded in events, e.g. `product-service`.
    pub const fn recorded_name(self) -> &'static str {
        match self {
            ServiceName::Order => "order-service",
            ServiceName::Product => "product-service",
            ServiceName::Payment => "payment-service",
        }
    }

    /// The short name used on the command line, e.g. `product`.
    pub const fn short_name(self) -> &'static str {
        match self {
            ServiceName::Order => "order",
            ServiceName::Product => "product",
            ServiceName::Payment => "payment",
        }
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.recorded_name())
    }
}

/// Whether a command runs a step or compensates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Run the step.
    Execute,
    /// Undo the step.
    Compensate,
}

/// One line item: what the order buys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The customer paying.
    pub customer: String,
    /// The product.
    pub sku: String,
    /// How many.
    pub qty: u32,
    /// The total, in cents.
    pub amount_cents: i64,
}

/// A command sent to a service's command topic (key: the saga id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMsg {
    /// The saga instance.
    pub saga_id: String,
    /// The order the saga is about.
    pub order_id: String,
    /// Which step.
    pub step: String,
    /// Run or compensate it.
    pub phase: Phase,
    /// The order's content.
    pub line: OrderLine,
    /// The W3C `traceparent` of the saga's trace (the services record their events under it).
    pub traceparent: String,
    /// On a compensation: the idempotency key of the `FAILED` event it answers
    /// ([`saga_tracker::Cause`]), recorded on the compensation's events so the tracker links them to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Why a step or compensation failed, as carried in a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyError {
    /// The error type, e.g. `PaymentError`.
    pub kind: String,
    /// The error's text.
    pub message: String,
}

/// A service's answer to a [`CommandMsg`], on the reply topic (key: the saga id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyMsg {
    /// The saga instance.
    pub saga_id: String,
    /// Which step.
    pub step: String,
    /// Run or compensate.
    pub phase: Phase,
    /// The service that handled it.
    pub service: ServiceName,
    /// `None` on success.
    pub error: Option<ReplyError>,
}

/// Wire names of the saga's steps, in order, with whether each is compensable: what the consistency check and
/// the report need to know about the saga.
pub fn step_shape() -> Vec<(&'static str, bool)> {
    OrderSaga::STEPS
        .iter()
        .map(|d| (d.name, d.compensable))
        .collect()
}

/// The customer whose wallet is empty: orders charged to them fail at payment.
pub const BROKE_CUSTOMER: &str = "cust-broke";
/// Customers with money.
pub const PAYING_CUSTOMERS: [&str; 3] = ["cust-ada", "cust-grace", "cust-linus"];
/// Products in the main warehouse.
pub const REGULAR_SKUS: [&str; 3] = ["sku-keyboard", "sku-mouse", "sku-monitor"];
/// A product kept in the legacy warehouse, whose ledger rejects stock releases: compensations of its
/// reservations fail.
pub const LEGACY_SKU: &str = "sku-legacy-printer";

/// The start of every saga id of the run `run_id` (`saga-{run_id}-`): what tells this run's commands, replies and
/// events from those of earlier runs on a shared broker.
pub fn saga_id_prefix(run_id: &str) -> String {
    format!("saga-{run_id}-")
}
