//! The handlers. Each carries its OpenAPI description (`#[utoipa::path]`), collected by [`super::openapi`].

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::auth;
use super::error::ApiError;
use super::extract::{ApiQuery, SagaId};
use super::model::{
    DATABASE_UNAVAILABLE_MESSAGE, ErrorBody, Health, SagaPage, SagaQuery, SagaRow, SagaState,
    Stats, Timeline, TimelineCursor, TimelineQuery, Unavailable,
};
use crate::db::timeline;

/// `/healthz`: 503 when the database does not answer; 200 `degraded` with reasons when ingestion is stalled;
/// else 200 `ok` (no token needed).
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses(
        (status = 200, description = "Healthy, or degraded with reasons (a stalled partition).", body = Health),
        (status = 503, description = "Database unreachable.", body = Unavailable),
    ))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    if let Err(e) = ping(&state).await {
        return database_unavailable(&e);
    }
    let reasons: Vec<String> = state
        .metrics
        .stall()
        .stalled()
        .iter()
        .map(ToString::to_string)
        .collect();
    if reasons.is_empty() {
        Json(json!({ "status": "ok" })).into_response()
    } else {
        Json(json!({ "status": "degraded", "reasons": reasons })).into_response()
    }
}

/// `/livez`: 200 while the process serves HTTP (Kubernetes liveness: restart only a process that stopped
/// answering; a database outage or a stall is not cured by a restart).
#[utoipa::path(get, path = "/livez", tag = "health", security(()),
    responses((status = 200, description = "Alive.", body = Health)))]
pub async fn livez() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `/readyz`: 503 while the database does not answer (Kubernetes readiness: the API cannot serve then).
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "Database unreachable.", body = Unavailable),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match ping(&state).await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => database_unavailable(&e),
    }
}

/// How long a health check waits for the database (probes time out after 1–10 s; the pool alone would wait its
/// 10 s acquire timeout).
pub const HEALTH_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn ping(state: &AppState) -> Result<(), sqlx::Error> {
    tokio::time::timeout(HEALTH_PING_TIMEOUT, state.store.ping())
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

fn database_unavailable(e: &sqlx::Error) -> Response {
    tracing::warn!(error = %e, "health check: the database does not answer");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "status": "unavailable",
            "error": "database_unavailable",
            "message": DATABASE_UNAVAILABLE_MESSAGE,
        })),
    )
        .into_response()
}

/// Prometheus metrics, text exposition format 0.0.4, from memory (the database gauges are refreshed in the
/// background). Needs `Authorization: Bearer` only with `--metrics-token`.
#[utoipa::path(get, path = "/metrics", tag = "metrics", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Metrics.", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 401, description = "`--metrics-token` is set and the request lacks it.", body = ErrorBody),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    auth::check(&headers, state.metrics_token.as_deref())?;
    Ok((
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response())
}

/// One saga's derived summary.
#[utoipa::path(get, path = "/api/v1/sagas/{id}", tag = "sagas", security(("bearer" = [])),
    params(("id" = String, Path, description = "The saga id.", pattern = "^[^\\u0000]*$", min_length = 1)),
    responses(
        (status = 200, description = "The saga.", body = SagaRow),
        (status = 400, description = "Invalid id.", body = ErrorBody),
        (status = 401, description = "Missing or wrong token.", body = ErrorBody),
        (status = 404, description = "Unknown saga.", body = ErrorBody),
        (status = 503, description = "Database unavailable.", body = ErrorBody),
    ))]
pub async fn get_saga(
    State(state): State<AppState>,
    SagaId(id): SagaId,
) -> Result<Json<SagaRow>, ApiError> {
    match state.store.saga(&id).await? {
        Some(saga) => Ok(Json(saga)),
        None => Err(unknown_saga(&id)),
    }
}

/// One saga's events in order, a page at a time (`limit`, default 100, at most 500; `next_cursor`); failures
/// linked to the compensations they triggered, across pages.
#[utoipa::path(get, path = "/api/v1/sagas/{id}/timeline", tag = "sagas", security(("bearer" = [])),
    params(("id" = String, Path, description = "The saga id.", pattern = "^[^\\u0000]*$", min_length = 1),
        TimelineQuery),
    responses(
        (status = 200, description = "A page of the timeline.", body = Timeline),
        (status = 400, description = "Invalid id, or invalid or unknown query parameter.", body = ErrorBody),
        (status = 401, description = "Missing or wrong token.", body = ErrorBody),
        (status = 404, description = "Unknown saga.", body = ErrorBody),
        (status = 503, description = "Database unavailable.", body = ErrorBody),
    ))]
pub async fn timeline(
    State(state): State<AppState>,
    SagaId(id): SagaId,
    ApiQuery(query): ApiQuery<TimelineQuery>,
) -> Result<Json<Timeline>, ApiError> {
    let (cursor, limit) = query.into_page()?;
    let (page, more, links) = state.store.timeline_page(&id, cursor, limit).await?;
    let saga = state.store.saga(&id).await?;
    // past the last page of a known saga: an empty page; no events at all: unknown
    if page.is_empty() && (cursor.is_none() || saga.is_none()) {
        return Err(unknown_saga(&id));
    }
    let events = timeline::build_page(page, links);
    let next_cursor = match events.last() {
        Some(last) if more => Some(TimelineCursor::of(last).encode()),
        _ => None,
    };
    Ok(Json(Timeline {
        saga_id: id,
        saga,
        events,
        next_cursor,
    }))
}

/// Search sagas, newest first, keyset pagination.
#[utoipa::path(get, path = "/api/v1/sagas", tag = "sagas", security(("bearer" = [])),
    params(SagaQuery),
    responses(
        (status = 200, description = "A page of sagas.", body = SagaPage),
        (status = 400, description = "Invalid or unknown query parameter.", body = ErrorBody),
        (status = 401, description = "Missing or wrong token.", body = ErrorBody),
        (status = 503, description = "Database unavailable.", body = ErrorBody),
    ))]
pub async fn list_sagas(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SagaQuery>,
) -> Result<Json<SagaPage>, ApiError> {
    let filter = query.into_filter()?;
    Ok(Json(state.store.list(&filter).await?))
}

/// Totals: sagas per state, events, stuck sagas, ingestion counters.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats", security(("bearer" = [])),
    responses(
        (status = 200, description = "Statistics.", body = Stats),
        (status = 401, description = "Missing or wrong token.", body = ErrorBody),
        (status = 503, description = "Database unavailable.", body = ErrorBody),
    ))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    Ok(Json(state.stats().await?))
}

impl AppState {
    /// The totals `/api/v1/stats` and GraphQL's `stats` serve.
    pub async fn stats(&self) -> Result<Stats, sqlx::Error> {
        let by_state = self.store.sagas_by_state().await?;
        Ok(Stats {
            sagas_total: by_state.values().sum(),
            sagas_by_status: SagaState::ALL
                .into_iter()
                .map(|s| (s, by_state.get(&s).copied().unwrap_or(0)))
                .collect(),
            events_total: self.store.event_count().await?,
            stuck_sagas: self.store.stuck_sagas(self.stuck_after).await?,
            stuck_after_seconds: self.stuck_after.as_secs(),
            ingested_since_start: self.metrics.ingested_total(),
            duplicates_since_start: self.metrics.duplicate_total(),
            dlq_since_start: self.metrics.dlq_total(),
            consumer_lag: self.metrics.total_lag(),
        })
    }
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", security(("bearer" = [])),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", body = serde_json::Value),
        (status = 401, description = "Missing or wrong token.", body = ErrorBody),
    ))]
pub async fn openapi() -> Json<&'static serde_json::Value> {
    Json(super::openapi::json())
}

/// Unknown routes: JSON 404.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}

/// Known routes with another method: JSON 405.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn unknown_saga(id: &str) -> ApiError {
    ApiError::NotFound(format!("unknown saga `{}`", id.escape_debug()))
}
