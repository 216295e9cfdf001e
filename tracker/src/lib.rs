//! The central saga tracker service.
