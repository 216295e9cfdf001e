//! API errors: every one is a JSON [`ErrorBody`] `{"error": code, "message": text}` with a matching status.
//! A database error is logged with its details; the client only learns that the database is unavailable.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::model::{ErrorBody, ErrorCode, Invalid};

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
    /// A route that exists, called with another method (405).
    #[error("method not allowed; every route is GET")]
    MethodNotAllowed,
    /// The database failed (503). The error goes to the log, never to the client.
    #[error("the database is unavailable; the service's log has the details")]
    Database(#[from] sqlx::Error),
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl ApiError {
    /// The status and the code of the body.
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed)
            }
            ApiError::Database(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::DatabaseUnavailable,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = self.status_and_code();
        if let ApiError::Database(e) = &self {
            tracing::error!(error = %e, "API query failed");
        }
        let body = Json(ErrorBody {
            error,
            message: self.to_string(),
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_do_not_reach_the_client() {
        let e = ApiError::Database(sqlx::Error::Protocol(
            "invalid byte sequence for encoding \"UTF8\": 0x00".into(),
        ));
        assert!(!e.to_string().contains("0x00"), "{e}");
        assert_eq!(e.status_and_code().1, ErrorCode::DatabaseUnavailable);
    }
}
