//! Procedural macros for `saga-tracker`. Use them through the `saga-tracker` crate.
