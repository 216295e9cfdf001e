//! Bearer-token checks: the `/api/v1` routes (with `--api-token`) and `/metrics` (with `--metrics-token`).

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// Rejects the request with 401 unless it carries `Authorization: Bearer <configured token>`.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(request.headers(), state.token.as_deref())?;
    Ok(next.run(request).await)
}

impl AppState {
    /// `Ok` when no API token is configured or the request carries it (the REST routes and `/api/graphql`).
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        check(headers, self.token.as_deref())
    }
}

/// `Ok` when no token is configured or the request carries it.
pub fn check(headers: &HeaderMap, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    // Constant time in the token's content (the length may show).
    match given {
        Some(g) if bool::from(g.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn compares_tokens() {
        assert!(check(&HeaderMap::new(), None).is_ok());
        assert!(check(&with("Bearer abc"), Some("abc")).is_ok());
        assert!(check(&with("bearer abc"), Some("abc")).is_ok());
        assert!(check(&with("Bearer abd"), Some("abc")).is_err());
        assert!(check(&with("Bearer abcd"), Some("abc")).is_err());
        assert!(check(&with("Basic abc"), Some("abc")).is_err());
        assert!(check(&HeaderMap::new(), Some("abc")).is_err());
    }
}
