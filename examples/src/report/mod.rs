//! What the demo prints, built from the events read back from `saga.tracker`.

pub mod consistency;
pub mod consume;
pub mod run;
pub mod summary;
pub mod table;
pub mod timeline;
pub mod tracker;
