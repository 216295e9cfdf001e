//! API errors: every one is a JSON body `{"error": code, "message": text}` with a matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error the API reports.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter or path segment is invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No such saga or route (404).
    #[error("{0}")]
    NotFound(String),
    /// The database failed (503).
    #[error("database unavailable: {0}")]
    Database(#[from] sqlx::Error),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Database(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Database(e) = &self {
            tracing::error!(error = %e, "API query failed");
        }
        let body = Json(json!({ "error": code, "message": self.to_string() }));
        if status == StatusCode::UNAUTHORIZED {
            (
                status,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                body,
            )
                .into_response()
        } else {
            (status, body).into_response()
        }
    }
}
