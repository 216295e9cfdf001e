//! Extractors whose rejections are API errors (JSON 400), checked before the database sees the values.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::model::check_text;

/// A query string deserialized into `T` (which denies unknown fields); any failure is a JSON 400.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// The `{id}` of a saga route: valid UTF-8 once percent-decoded, non-empty, no NUL character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for SagaId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        check_text("id", &id)?;
        Ok(SagaId(id))
    }
}
