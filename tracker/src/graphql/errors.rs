//! API errors as GraphQL errors: the REST message, and `extensions.code` the REST error code
//! (`bad_request`, `database_unavailable`, …). A database error is logged here and never reaches the client.

use async_graphql::ErrorExtensions as _;

use crate::api::error::ApiError;
use crate::api::model::{ErrorCode, Invalid};

/// The GraphQL error of an API error.
pub fn from_api(e: ApiError) -> async_graphql::Error {
    if let ApiError::Database(db) = &e {
        tracing::error!(error = %db, "GraphQL query failed");
    }
    coded(e.to_string(), e.status_and_code().1)
}

/// An error with `extensions.code`.
pub fn coded(message: String, code: ErrorCode) -> async_graphql::Error {
    let code = serde_json::to_value(code)
        .ok()
        .and_then(|v| async_graphql::Value::from_json(v).ok())
        .unwrap_or(async_graphql::Value::Null);
    async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code))
}

/// A database failure.
pub fn database(e: sqlx::Error) -> async_graphql::Error {
    from_api(ApiError::Database(e))
}

/// A database failure shared by the sagas of one batch (the loader's error).
pub fn database_shared(e: &sqlx::Error) -> async_graphql::Error {
    tracing::error!(error = %e, "GraphQL query failed");
    // the client's message is the REST one, whatever the database said
    let public = ApiError::Database(sqlx::Error::PoolClosed);
    coded(public.to_string(), public.status_and_code().1)
}

/// Invalid input.
pub fn invalid(e: Invalid) -> async_graphql::Error {
    from_api(ApiError::from(e))
}
