//! Shared helpers for saga-tracker integration tests.
