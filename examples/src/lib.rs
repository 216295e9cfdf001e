//! The Order/Product/Payment saga demo behind `order-saga-demo`.
//!
//! Three services (order, product, payment) talk over Kafka command and reply topics; their annotated handlers
//! record every step and compensation to `saga.tracker`. The order service runs the sagas; afterwards the demo
//! reads `saga.tracker` back, decodes every event, and reports what the events say: sagas by final state,
//! events by status, per-step duration percentiles, the timeline of one compensated saga, and whether every
//! saga's recorded timeline is consistent. With `--with-tracker` ([`central_tracker`]) the central tracker
//! service runs in-process too, and the report adds the failed saga's timeline as its API serves it.
//!
//! [`run`] is the whole demo for a validated [`DemoConfig`]; the binary only parses arguments and prints.
//!
//! With `--outbox` ([`store`]) the services keep their state in PostgreSQL tables and each step's events commit
//! with its business change through the transactional outbox; a relay in the process publishes them.
//!
//! Modules: [`run`] (the run), [`error`] (errors and exit codes), [`report`] (the read-back, the checks and
//! everything printed), [`central_tracker`] (the in-process tracker service and its API client), [`bus`],
//! [`services`], [`orchestrator`], [`saga`], [`cli`].

pub mod bus;
pub mod central_tracker;
pub mod cli;
pub mod error;
pub mod orchestrator;
pub mod report;
pub mod run;
pub mod saga;
pub mod services;
pub mod store;

pub use cli::{Args, BrokerChoice, DemoConfig, Role};
pub use error::{DemoError, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INCONSISTENT};
pub use report::run::RunReport;
pub use run::{DemoOutcome, Served, order_saga_shape, run};
