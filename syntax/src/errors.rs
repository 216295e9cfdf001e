//! Collecting several [`syn::Error`]s so every problem of one item is reported at once.

use proc_macro2::Span;

/// Accumulated errors.
#[derive(Default)]
pub struct Errors {
    inner: Option<syn::Error>,
}

impl Errors {
    /// Adds an error.
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.inner {
            Some(all) => all.combine(error),
            None => self.inner = Some(error),
        }
    }

    /// Adds an error at `span`.
    pub fn push_at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Whether no error was added.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// `Ok(value)` when no error was added, else every error.
    pub fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.inner {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }

    /// The errors, if any.
    pub fn into_error(self) -> Option<syn::Error> {
        self.inner
    }
}
