//! The routes the operator console needs beyond the saga routes: the overview (activity over time, slowest
//! steps) and the search box (saga id, order id or trace id). Token-protected like every `/api/v1` route.

use axum::Json;
use axum::extract::State;
use chrono::Utc;

use super::AppState;
use super::error::ApiError;
use super::extract::ApiQuery;
use super::model::{ErrorBody, Overview, OverviewQuery, SagaPage, SearchQuery, check_text};

/// How many buckets the overview's window is cut into.
pub const OVERVIEW_BUCKETS: u32 = 60;

/// Activity over the last `minutes` (by recording time): events, failures and compensation failures per
/// bucket, and the slowest steps (p50/p99). The DLQ count and the consumer lag are in `/api/v1/stats`.
#[utoipa::path(get, path = "/api/v1/overview", tag = "stats", security(("bearer" = [])),
    params(OverviewQuery),
    responses(
        (status = 200, description = "The overview.", body = Overview),
        (status = 400, description = "Invalid or unknown query parameter.", body = ErrorBody),
        (status = 401, description = "Missing or wrong token.", body = ErrorBody),
        (status = 503, description = "Database unavailable.", body = ErrorBody),
    ))]
pub async fn overview(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    let minutes = query.minutes()?;
    let window = chrono::Duration::minutes(i64::from(minutes));
    let bucket_seconds = minutes * 60 / OVERVIEW_BUCKETS;
    Ok(Json(
        state
            .store
            .overview(Utc::now() - window, bucket_seconds)
            .await?,
    ))
}

/// The sagas a saga id, an order id or a trace id names (exact match), newest first, at most 50.
#[utoipa::path(get, path = "/api/v1/search", tag = "sagas", security(("bearer" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "The matching sagas (never a `next_cursor`).", body = SagaPage),
        (status = 400, description = "Missing, invalid or unknown query parameter.", body = ErrorBody),
        (status = 401, description = "Missing or wrong token.", body = ErrorBody),
        (status = 503, description = "Database unavailable.", body = ErrorBody),
    ))]
pub async fn search(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<SagaPage>, ApiError> {
    check_text("q", &query.q)?;
    Ok(Json(SagaPage {
        items: state.store.search(&query.q).await?,
        next_cursor: None,
    }))
}
