//! # saga-tracker-service
//!
//! The central saga tracker: consumes `saga.tracker`, stores every event in PostgreSQL (`saga_events`, append-only,
//! duplicates absorbed by the event id) with the derived state of each saga (`sagas`), sends undecodable messages
//! to `saga.tracker.dlq`, and serves a JSON API, Prometheus metrics and an OpenAPI document.
//!
//! Run it in-process with [`Service::start`]:
//!
//! ```no_run
//! # async fn run() -> Result<(), saga_tracker_service::StartError> {
//! use saga_tracker_service::{Config, Service};
//! let mut config = Config::new("postgres://postgres@127.0.0.1/test", "localhost:9092");
//! config.listen = "127.0.0.1:0".parse().expect("address");
//! let service = Service::start(config).await?;
//! println!("API on http://{}", service.addr());
//! service.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Modules: [`config`] (flags and environment), [`db`] (migrations, store, state derivation, timeline),
//! [`ingest`] (consumer, DLQ, validation), [`api`] (routes, errors, auth, OpenAPI), [`graphql`] (`/api/graphql`), [`metrics`], [`ops`]
//! (the operations subcommands: archive, restore, replay, DLQ re-drive, topics, reconcile).

pub mod api;
pub mod config;
pub mod console;
pub mod db;
pub mod graphql;
pub mod ingest;
pub mod metrics;
pub mod ops;
mod service;

pub use config::{Assignment, Config, ConfigError};
pub use db::{SagaState, Store, StoreError};
pub use metrics::Metrics;
pub use service::{Service, StartError};
