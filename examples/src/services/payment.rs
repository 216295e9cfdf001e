//! The payment service: charges the customer's wallet, refunds it when the saga is compensated.

use std::collections::HashMap;
use std::sync::Mutex;

use saga_tracker::{Saga, saga_compensation, saga_service, saga_step};

use super::{answering, reply_error, simulate_work, unknown_command};
use crate::saga::{
    BROKE_CUSTOMER, CommandMsg, OrderSaga, PAYING_CUSTOMERS, Phase, ReplyError, ServiceName,
};

/// What a paying customer has in their wallet when the service starts, in cents.
pub const INITIAL_BALANCE_CENTS: i64 = 1_000_000_000_000;

/// Customer wallets and the charges made for sagas.
#[derive(Debug)]
pub struct Wallets {
    inner: Mutex<WalletsInner>,
}

#[derive(Debug)]
struct WalletsInner {
    balances: HashMap<String, i64>,
    charges: HashMap<String, Charge>,
}

#[derive(Debug, Clone)]
struct Charge {
    customer: String,
    amount_cents: i64,
}

impl Default for Wallets {
    fn default() -> Self {
        let mut balances: HashMap<String, i64> = PAYING_CUSTOMERS
            .iter()
            .map(|c| (c.to_string(), INITIAL_BALANCE_CENTS))
            .collect();
        balances.insert(BROKE_CUSTOMER.to_owned(), 0);
        Wallets {
            inner: Mutex::new(WalletsInner {
                balances,
                charges: HashMap::new(),
            }),
        }
    }
}

impl Wallets {
    /// The balance of `customer`, in cents.
    pub fn balance(&self, customer: &str) -> Option<i64> {
        self.inner
            .lock()
            .ok()
            .and_then(|w| w.balances.get(customer).copied())
    }
}

/// Why a payment could not be charged or refunded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The wallet holds less than the order's total.
    #[error("insufficient funds: {customer} has {}, needs {}", money(*balance_cents), money(*amount_cents))]
    InsufficientFunds {
        /// The customer.
        customer: String,
        /// What the wallet holds.
        balance_cents: i64,
        /// What the order costs.
        amount_cents: i64,
    },
    /// No wallet for the customer.
    #[error("unknown customer {0}")]
    UnknownCustomer(String),
    /// Nothing was charged for the saga.
    #[error("no charge recorded for saga {0}")]
    NoCharge(String),
    /// `--outbox`: the database failed (the step's transaction rolls back).
    #[error("database: {0}")]
    Database(String),
    /// The wallet table is unusable (a handler panicked while holding it).
    #[error("wallet table poisoned")]
    Poisoned,
}

/// Cents as `$12.34`.
pub fn money(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, (cents % 100).abs())
}

/// Charges the order's total to the customer.
#[saga_step(OrderSaga, ChargePayment, saga_id = cmd.saga_id, order_id = cmd.order_id)]
pub async fn charge_payment(wallets: &Wallets, cmd: &CommandMsg) -> Result<i64, PaymentError> {
    simulate_work(&cmd.saga_id, "charge_payment", 4).await;
    let mut inner = wallets.inner.lock().map_err(|_| PaymentError::Poisoned)?;
    let line = &cmd.line;
    let balance = inner
        .balances
        .get_mut(&line.customer)
        .ok_or_else(|| PaymentError::UnknownCustomer(line.customer.clone()))?;
    if *balance < line.amount_cents {
        return Err(PaymentError::InsufficientFunds {
            customer: line.customer.clone(),
            balance_cents: *balance,
            amount_cents: line.amount_cents,
        });
    }
    *balance -= line.amount_cents;
    let left = *balance;
    inner.charges.insert(
        cmd.saga_id.clone(),
        Charge {
            customer: line.customer.clone(),
            amount_cents: line.amount_cents,
        },
    );
    Ok(left)
}

/// Refunds what was charged for a saga.
#[saga_compensation(OrderSaga, ChargePayment)]
pub async fn refund_payment(
    wallets: &Wallets,
    #[saga_id] saga_id: &str,
) -> Result<(), PaymentError> {
    simulate_work(saga_id, "refund_payment", 4).await;
    let mut inner = wallets.inner.lock().map_err(|_| PaymentError::Poisoned)?;
    let charge = inner
        .charges
        .remove(saga_id)
        .ok_or_else(|| PaymentError::NoCharge(saga_id.to_owned()))?;
    *inner.balances.entry(charge.customer).or_insert(0) += charge.amount_cents;
    Ok(())
}

saga_service! {
    /// The payment service.
    pub PaymentService {
        step OrderSaga::ChargePayment => charge_payment,
        compensate OrderSaga::ChargePayment => refund_payment,
    }
}

/// Runs the payment handler for `cmd`.
pub async fn handle(wallets: &Wallets, cmd: &CommandMsg) -> Result<(), ReplyError> {
    match (
        OrderSaga::ALL
            .into_iter()
            .find(|s| s.wire_name() == cmd.step),
        cmd.phase,
    ) {
        (Some(OrderSaga::ChargePayment), Phase::Execute) => charge_payment(wallets, cmd)
            .await
            .map(drop)
            .map_err(|e| reply_error(&e)),
        (Some(OrderSaga::ChargePayment), Phase::Compensate) => {
            answering(cmd, refund_payment(wallets, &cmd.saga_id))
                .await
                .map_err(|e| reply_error(&e))
        }
        _ => Err(unknown_command(ServiceName::Payment, cmd)),
    }
}
