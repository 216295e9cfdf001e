//! The handlers.

use std::collections::HashMap;
use std::str::FromStr;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::db::timeline;
use crate::db::{Cursor, SagaFilter, SagaState};
use crate::metrics::DbSnapshot;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page; a larger `limit` is capped to it.
pub const MAX_LIMIT: i64 = 500;

const LIST_PARAMS: [&str; 8] = [
    "type", "status", "step", "service", "from", "to", "cursor", "limit",
];

/// `/healthz`: 503 when the database does not answer; 200 `degraded` with reasons when ingestion is stalled;
/// else 200 `ok`.
pub(super) async fn healthz(State(state): State<AppState>) -> Response {
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
pub(super) async fn livez() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `/readyz`: 503 while the database does not answer (Kubernetes readiness: the API cannot serve then).
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
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
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "unavailable", "error": "database_unavailable", "message": e.to_string() })),
    )
        .into_response()
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = async {
        Ok::<_, sqlx::Error>(DbSnapshot {
            sagas_by_state: state.store.sagas_by_state().await?,
            stuck: state.store.stuck_sagas(state.stuck_after).await?,
        })
    }
    .await;
    if let Err(e) = &snapshot {
        tracing::warn!(error = %e, "metrics: database query failed");
    }
    let body = state
        .metrics
        .render(snapshot.as_ref().ok(), state.stuck_after.as_secs());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

pub(super) async fn get_saga(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.store.saga(&id).await? {
        Some(saga) => Ok(Json(saga).into_response()),
        None => Err(unknown_saga(&id)),
    }
}

pub(super) async fn timeline(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let events = state.store.events(&id).await?;
    if events.is_empty() {
        return Err(unknown_saga(&id));
    }
    let saga = state.store.saga(&id).await?;
    Ok(
        Json(json!({ "saga_id": id, "saga": saga, "events": timeline::build(events) }))
            .into_response(),
    )
}

pub(super) async fn list_sagas(
    State(state): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let filter = parse_filter(&params)?;
    Ok(Json(state.store.list(&filter).await?).into_response())
}

pub(super) async fn stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let by_state = state.store.sagas_by_state().await?;
    let sagas_by_status: serde_json::Map<String, Value> = crate::db::SagaState::ALL
        .iter()
        .map(|s| {
            (
                s.as_str().to_owned(),
                json!(by_state.get(s.as_str()).copied().unwrap_or(0)),
            )
        })
        .collect();
    Ok(Json(json!({
        "sagas_total": by_state.values().sum::<i64>(),
        "sagas_by_status": sagas_by_status,
        "events_total": state.store.event_count().await?,
        "stuck_sagas": state.store.stuck_sagas(state.stuck_after).await?,
        "stuck_after_seconds": state.stuck_after.as_secs(),
        "ingested_since_start": state.metrics.ingested_total(),
        "duplicates_since_start": state.metrics.duplicate_total(),
        "dlq_since_start": state.metrics.dlq_total(),
        "consumer_lag": state.metrics.total_lag(),
    }))
    .into_response())
}

pub(super) async fn openapi() -> Response {
    Json(super::openapi::document()).into_response()
}

pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}

fn unknown_saga(id: &str) -> ApiError {
    ApiError::NotFound(format!("unknown saga `{id}`"))
}

/// Parses and checks the query of `GET /api/v1/sagas`.
pub fn parse_filter(params: &HashMap<String, String>) -> Result<SagaFilter, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !LIST_PARAMS.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown query parameter `{unknown}`; expected one of {}",
            LIST_PARAMS.join(", ")
        )));
    }
    let text = |name: &str| -> Result<Option<String>, ApiError> {
        match params.get(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => {
                Err(ApiError::BadRequest(format!("`{name}` must not be empty")))
            }
            Some(v) => Ok(Some(v.clone())),
        }
    };
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        text(name)?
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        ApiError::BadRequest(format!(
                            "`{name}`: `{v}` is not an RFC 3339 time ({e})"
                        ))
                    })
            })
            .transpose()
    };
    let status = text("status")?
        .map(|v| SagaState::from_str(&v).map(|s| s.as_str().to_owned()))
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = match text("limit")? {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => n.min(MAX_LIMIT),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "`limit`: `{v}` is not an integer >= 1"
                )));
            }
        },
    };
    let cursor = text("cursor")?
        .map(|v| {
            Cursor::decode(&v).ok_or_else(|| {
                ApiError::BadRequest(format!("`cursor`: `{v}` is not a cursor from next_cursor"))
            })
        })
        .transpose()?;
    let (from, to) = (time("from")?, time("to")?);
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::BadRequest("`from` is after `to`".into()));
    }
    Ok(SagaFilter {
        saga_type: text("type")?,
        status,
        step: text("step")?,
        service: text("service")?,
        from,
        to,
        cursor,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<SagaFilter, ApiError> {
        parse_filter(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn filter_parsing() {
        let f = parse(&[
            ("status", "failed"),
            ("limit", "100000"),
            ("from", "2024-11-24T00:00:00Z"),
        ])
        .expect("ok");
        assert_eq!(f.status.as_deref(), Some("FAILED"));
        assert_eq!(f.limit, MAX_LIMIT);
        assert_eq!(parse(&[]).expect("ok").limit, DEFAULT_LIMIT);
        for bad in [
            [("limit", "0")],
            [("limit", "ten")],
            [("status", "DONE")],
            [("from", "yesterday")],
            [("cursor", "zz")],
            [("typo", "x")],
            [("type", "")],
        ] {
            assert!(
                matches!(parse(&bad), Err(ApiError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse(&[
                ("from", "2024-11-25T00:00:00Z"),
                ("to", "2024-11-24T00:00:00Z")
            ]),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn cursor_round_trips() {
        let c = Cursor {
            started_at: DateTime::from_timestamp_micros(1_732_406_400_000_001).expect("ok"),
            saga_id: "a:b".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
    }
}
