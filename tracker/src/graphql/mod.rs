//! GraphQL at `/api/graphql` (`async-graphql`): `saga(id)`, `sagas(filter, after, first)` (a Relay connection
//! over the REST list's keyset cursor), each saga's `events` and `links`, and `stats`. The types are the REST API's
//! ([`crate::api::model`]); the data comes from the same [`Store`](crate::db::Store) queries. Same bearer token
//! as `/api/v1` (introspection included); queries are bounded in depth, complexity and body size; every error is
//! a GraphQL error (a database failure is logged, the client only learns that the database is unavailable).
//! The schema's SDL is committed at `tracker/graphql/schema.graphql` (`tests/graphql.rs` checks it; `UPDATE_SDL=1`
//! regenerates it).

mod errors;
mod http;
mod loaders;
mod schema;
mod types;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

use crate::api::AppState;

pub use schema::{
    MAX_BODY_BYTES, MAX_COMPLEXITY, MAX_DEPTH, QueryRoot, TrackerSchema, schema, sdl,
};
pub use types::CompensationLink;

/// The route (`POST` with a JSON body `{"query", "variables", "operationName"}`, or `GET` with those as query
/// parameters).
pub const PATH: &str = "/api/graphql";

/// The `/api/graphql` route, to merge into the API router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(http::serve).post(http::serve))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
