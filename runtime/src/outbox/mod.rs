//! The transactional outbox (feature `outbox`): a step's events commit or roll back with the business
//! transaction, and a [`Relay`] publishes them to Kafka.
//!
//! - [`StepInTx`] / [`record_in_tx`] write STARTED and SUCCEEDED (COMPENSATION_STARTED, COMPENSATED) into the
//!   caller's PostgreSQL transaction, as rows of `saga_tracker_outbox` holding exactly the bytes [`KafkaSink`]
//!   would send. A failure (the handler returned `Err`, panicked or was cancelled: its transaction will roll
//!   back) is recorded outside that transaction, through the current [`Tracker`] and its direct sink, so it is
//!   never lost with the rollback.
//! - [`Relay`] claims unpublished rows with `FOR UPDATE SKIP LOCKED`, publishes them with the idempotent
//!   [`KafkaSink`] (same eventId bytes, key = saga id, `traceparent` header), and marks them published only
//!   after the broker acknowledged them. It wakes on `LISTEN saga_tracker_outbox` and polls as a fallback.
//! - [`MIGRATOR`] / [`migrate`] create the table (partitioned by day), its trigger and its maintenance functions;
//!   [`ensure_partitions`] and [`drop_published_partitions`] keep the daily partitions.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! use saga_tracker::outbox::StepInTx;
//! use saga_tracker::{StepStatus, Transition};
//!
//! saga_tracker::outbox::migrate(&pool).await?;
//! let mut tx = pool.begin().await?;
//! let step = StepInTx::start(
//!     &mut tx,
//!     Transition::new("OrderSaga", "reserve_stock", "saga-42", StepStatus::Started),
//! )
//! .await?;
//! let result: Result<u64, sqlx::Error> =
//!     sqlx::query("UPDATE stock SET reserved = reserved + 1 WHERE sku = 'A'")
//!         .execute(&mut *tx)
//!         .await
//!         .map(|r| r.rows_affected());
//! step.finish(&mut tx, &result).await?; // SUCCEEDED into `tx`, or FAILED through the tracker
//! match result {
//!     Ok(_) => tx.commit().await?,      // the stock change and STARTED + SUCCEEDED, together
//!     Err(_) => tx.rollback().await?,   // neither; the FAILED event is already on its way
//! }
//! # Ok(()) }
//! ```
//!
//! [`KafkaSink`]: crate::KafkaSink
//! [`Tracker`]: crate::Tracker

mod migrations;
mod relay;
mod step_fn;
mod write;

pub use migrations::{MIGRATOR, drop_published_partitions, ensure_partitions, migrate};
pub use relay::{BatchReport, Relay, RelayConfig, RelayError};
#[doc(hidden)]
pub use step_fn::{OutboxParam, finish_in_tx, outbox_conn, start_in_tx};
pub use write::{OUTBOX_ERROR_KIND, OutboxError, StepInTx, record_in_tx, record_in_tx_with};

/// The outbox table.
pub const TABLE: &str = "saga_tracker_outbox";
/// The channel the table's trigger notifies when a transaction that inserted rows commits.
pub const CHANNEL: &str = "saga_tracker_outbox";
