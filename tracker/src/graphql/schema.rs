//! The query root and the schema with its limits.

use std::sync::LazyLock;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Result, Schema};

use super::errors;
use crate::api::AppState;
use crate::api::model::{DEFAULT_LIMIT, Invalid, MAX_LIMIT, SagaQuery, SagaRow, Stats, check_text};
use crate::db::Cursor;

/// The deepest query accepted (`sagas { edges { node { events { step } } } }` is 5; GraphiQL's introspection
/// query, 7 levels of `ofType`, fits).
pub const MAX_DEPTH: usize = 15;
/// The largest query complexity accepted: each field costs 1, a saga's `events` or `links`
/// [`EVENTS_COST`] more, `stats` [`STATS_COST`], and a connection's selection counts once per requested node
/// (`first`). A page of 500 sagas with their summary fits; with their events it does not.
pub const MAX_COMPLEXITY: usize = 10_000;
/// The largest request body (bytes); a larger one is a 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The extra cost of a saga's timeline (`events`, `links`).
pub const EVENTS_COST: usize = 50;
/// The extra cost of `stats` (four counting queries).
pub const STATS_COST: usize = 100;

/// The schema type.
pub type TrackerSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

/// The queries (GraphQL type `Query`).
pub struct QueryRoot;

fn app<'a>(ctx: &Context<'a>) -> Result<&'a AppState> {
    ctx.data::<AppState>()
}

#[Object(name = "Query")]
impl QueryRoot {
    /// One saga's summary, as `GET /api/v1/sagas/{id}`; null when there is no such saga.
    #[graphql(complexity = "1 + child_complexity")]
    async fn saga(&self, ctx: &Context<'_>, id: String) -> Result<Option<SagaRow>> {
        check_text("id", &id).map_err(errors::invalid)?;
        app(ctx)?.store.saga(&id).await.map_err(errors::database)
    }

    /// Sagas newest first, as `GET /api/v1/sagas` (the same filters, checks and keyset cursor): `first` is the
    /// page size (1 to 500, default 50), `after` an edge's `cursor` (or `pageInfo.endCursor`).
    #[graphql(
        complexity = "(first.unwrap_or(DEFAULT_LIMIT as i32).clamp(1, MAX_LIMIT as i32) as usize) * child_complexity"
    )]
    async fn sagas(
        &self,
        ctx: &Context<'_>,
        filter: Option<SagaQuery>,
        after: Option<String>,
        first: Option<i32>,
    ) -> Result<Connection<String, SagaRow>> {
        let limit = match first {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&i64::from(n)) => i64::from(n),
            Some(n) => {
                return Err(errors::invalid(Invalid(format!(
                    "`first`: {n} is not between 1 and {MAX_LIMIT}"
                ))));
            }
        };
        let has_previous = after.as_deref().is_some_and(|a| !a.is_empty());
        let query = SagaQuery {
            cursor: after,
            limit: Some(limit),
            ..filter.unwrap_or_default()
        };
        let filter = query
            .into_filter()
            .map_err(|Invalid(m)| Invalid(m.replace("`cursor`", "`after`")))
            .map_err(errors::invalid)?;
        let page = app(ctx)?
            .store
            .list(&filter)
            .await
            .map_err(errors::database)?;
        let mut connection = Connection::new(has_previous, page.next_cursor.is_some());
        connection.edges.extend(page.items.into_iter().map(|saga| {
            let cursor = Cursor {
                started_at: saga.started_at,
                saga_id: saga.saga_id.clone(),
            }
            .encode();
            Edge::new(cursor, saga)
        }));
        Ok(connection)
    }

    /// Totals, as `GET /api/v1/stats`.
    #[graphql(complexity = "STATS_COST + child_complexity")]
    async fn stats(&self, ctx: &Context<'_>) -> Result<Stats> {
        app(ctx)?.stats().await.map_err(errors::database)
    }
}

static SCHEMA: LazyLock<TrackerSchema> = LazyLock::new(|| {
    Schema::build(QueryRoot, EmptyMutation, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_directives(8)
        .finish()
});

/// The schema (built once).
pub fn schema() -> &'static TrackerSchema {
    &SCHEMA
}

/// The schema in SDL, as committed at `tracker/graphql/schema.graphql`.
pub fn sdl() -> String {
    schema().sdl()
}
