//! PostgreSQL: embedded migrations, the batch writer, the state derivation and the queries the API runs.

mod copy;
pub mod dead_letters;
mod derived;
pub mod failure;
pub mod model;
pub mod overview;
pub mod state;
pub mod statistics;
mod store;
pub mod summary;
pub mod timeline;

pub use dead_letters::LocalDeadLetter;
pub use model::{EventRow, SagaRow, SagaState};
pub(crate) use store::recompute_sagas;
pub use store::{
    Cursor, IncomingEvent, MAX_SAGAS_PER_TRANSACTION, MIGRATOR, SagaFilter, SagaPage, Store,
    StoreError, Written,
};
