//! PostgreSQL: embedded migrations, the batch writer, the state derivation and the queries the API runs.

pub mod failure;
pub mod model;
pub mod state;
mod store;
pub mod timeline;

pub use model::{EventRow, SagaRow, SagaState};
pub use store::{Cursor, IncomingEvent, MIGRATOR, SagaFilter, SagaPage, Store, StoreError};
