//! The HTTP API (axum, JSON): saga summaries, timelines, search, stats, `/healthz`, `/metrics` and the OpenAPI
//! document ([`model`] holds the request and response types). With `--api-token`, every route but `/healthz`, `/livez`, `/readyz` and
//! `/metrics` needs `Authorization: Bearer`; `/metrics` needs its own `--metrics-token` when that is set.

mod auth;
mod console_routes;
pub mod error;
mod extract;
pub mod model;
pub mod openapi;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use crate::db::Store;
use crate::metrics::Metrics;

/// Route paths, shared by the router and the OpenAPI document.
pub mod paths {
    /// Database check and ingestion health (`ok`, `degraded`, 503 `unavailable`).
    pub const HEALTHZ: &str = "/healthz";
    /// Liveness: 200 while the process serves.
    pub const LIVEZ: &str = "/livez";
    /// Readiness: 503 while the database does not answer.
    pub const READYZ: &str = "/readyz";
    /// Prometheus metrics.
    pub const METRICS: &str = "/metrics";
    /// Search sagas.
    pub const SAGAS: &str = "/api/v1/sagas";
    /// One saga.
    pub const SAGA: &str = "/api/v1/sagas/{id}";
    /// One saga's timeline.
    pub const TIMELINE: &str = "/api/v1/sagas/{id}/timeline";
    /// Totals.
    pub const STATS: &str = "/api/v1/stats";
    /// This API's OpenAPI document.
    pub const OPENAPI: &str = "/api/v1/openapi.json";
    /// Activity over time and the slowest steps (the console's overview).
    pub const OVERVIEW: &str = "/api/v1/overview";
    /// Sagas by saga id, order id or trace id (the console's search box).
    pub const SEARCH: &str = "/api/v1/search";
    /// Every route (all are `GET`).
    pub const ALL: [&str; 11] = [
        HEALTHZ, METRICS, SAGAS, SAGA, TIMELINE, STATS, OPENAPI, LIVEZ, READYZ, OVERVIEW, SEARCH,
    ];
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The bearer token of the `/api/v1` routes, if required.
    pub token: Option<Arc<str>>,
    /// The bearer token of `/metrics`, if required.
    pub metrics_token: Option<Arc<str>>,
    /// Silence after which a saga counts as stuck.
    pub stuck_after: Duration,
}

/// The router: public `/healthz`, `/livez`, `/readyz` and `/metrics`, and the (optionally token-protected) `/api/v1` routes.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(paths::SAGAS, get(routes::list_sagas))
        .route(paths::SAGA, get(routes::get_saga))
        .route(paths::TIMELINE, get(routes::timeline))
        .route(paths::STATS, get(routes::stats))
        .route(paths::OVERVIEW, get(console_routes::overview))
        .route(paths::SEARCH, get(console_routes::search))
        .route(paths::OPENAPI, get(routes::openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route(paths::HEALTHZ, get(routes::healthz))
        .route(paths::LIVEZ, get(routes::livez))
        .route(paths::READYZ, get(routes::readyz))
        .route(paths::METRICS, get(routes::metrics))
        .merge(api)
        .merge(crate::graphql::router())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state)
}
