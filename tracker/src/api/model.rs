//! The API's request and response types: what the handlers serve, what the OpenAPI document describes, and
//! what a Rust client (the demo's `--with-tracker`) deserializes. One definition each; the row types are the
//! database's ([`crate::db::model`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use crate::db::model::{EventRow, SagaRow, SagaState};
pub use crate::db::overview::{Bucket, Overview, StepLatency};
pub use crate::db::timeline::{TimelineCursor, TimelineEntry};
pub use crate::db::{Cursor, SagaPage};
pub use saga_tracker_core::StepStatus;

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page; a larger `limit` is a 400.
pub const MAX_LIMIT: i64 = 500;
/// The pattern of every text parameter: no NUL character (PostgreSQL text cannot hold one).
pub const NO_NUL: &str = "^[^\\u0000]*$";

/// `GET /api/v1/sagas/{id}/timeline`: one page of the saga's events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Timeline {
    /// The saga id.
    pub saga_id: String,
    /// The saga's summary (absent only in the instant between storing its first events and deriving it).
    pub saga: Option<SagaRow>,
    /// The page's events in order: time, then status order, then id.
    pub events: Vec<TimelineEntry>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Timeline page size when `limit` is absent.
pub const DEFAULT_TIMELINE_LIMIT: i64 = 100;

/// The query of `GET /api/v1/sagas/{id}/timeline`. An unknown parameter is a 400.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// `next_cursor` of the previous page; empty = the first page.
    #[param(pattern = "^((-[0-9]{1,16}|[0-9]{1,17})_[0-6]_[0-9a-f]{32})?$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500.
    #[param(minimum = 1, maximum = 500, default = 100)]
    pub limit: Option<i64>,
}

impl TimelineQuery {
    /// The page's position and size, checked.
    pub fn into_page(self) -> Result<(Option<TimelineCursor>, i64), Invalid> {
        let limit = check_limit(self.limit, DEFAULT_TIMELINE_LIMIT)?;
        let cursor = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => {
                let cursor = TimelineCursor::decode(c).ok_or_else(|| {
                    Invalid(format!(
                        "`cursor`: `{}` is not a cursor from next_cursor",
                        c.escape_debug()
                    ))
                })?;
                check_time("cursor", cursor.recorded_at)?;
                Some(cursor)
            }
        };
        Ok((cursor, limit))
    }
}

fn check_limit(limit: Option<i64>, default: i64) -> Result<i64, Invalid> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Invalid(format!(
            "`limit`: {n} is not between 1 and {MAX_LIMIT}"
        ))),
    }
}

/// `GET /api/v1/stats`; GraphQL `stats`.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, async_graphql::SimpleObject,
)]
pub struct Stats {
    /// Sagas stored.
    pub sagas_total: i64,
    /// Sagas per derived state (every state is present).
    pub sagas_by_status: BTreeMap<SagaState, i64>,
    /// Events stored.
    pub events_total: i64,
    /// Sagas not terminal and silent for `stuck_after_seconds`.
    pub stuck_sagas: i64,
    /// The stuck threshold.
    pub stuck_after_seconds: u64,
    /// Events this process stored since it started.
    pub ingested_since_start: u64,
    /// Duplicates this process skipped since it started.
    pub duplicates_since_start: u64,
    /// Messages this process sent to the DLQ since it started.
    pub dlq_since_start: u64,
    /// Summed consumer lag over partitions; absent until librdkafka reported statistics.
    pub consumer_lag: Option<i64>,
}

/// `/healthz`, `/livez`, `/readyz` when the service answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` (`/healthz` only).
    #[schema(pattern = "^(ok|degraded)$")]
    pub status: String,
    /// Why the service is degraded (present when `status` is `degraded`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// The `message` of [`Unavailable`]: the database's own error text (host names, ports, user and database names,
/// SQLSTATEs, pool internals) is logged, never sent to the client.
pub const DATABASE_UNAVAILABLE_MESSAGE: &str = "the database does not answer";

/// `/healthz`, `/readyz` when the database does not answer (503).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Unavailable {
    /// `unavailable`.
    #[schema(pattern = "^unavailable$")]
    pub status: String,
    /// `database_unavailable`.
    pub error: ErrorCode,
    /// A fixed, generic text (the database's own error is logged, not returned).
    pub message: String,
}

/// The error codes of [`ErrorBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A query parameter or path segment is invalid (400).
    BadRequest,
    /// Missing or wrong bearer token (401).
    Unauthorized,
    /// No such saga or route (404).
    NotFound,
    /// The route exists, not with this method (405).
    MethodNotAllowed,
    /// The database failed (503); the details are in the service's log, not here.
    DatabaseUnavailable,
}

/// Every error the API returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What kind of error.
    pub error: ErrorCode,
    /// A sentence for a person.
    pub message: String,
}

/// The query of `GET /api/v1/sagas`. An unknown parameter is a 400. GraphQL input `SagaFilter` of `sagas` (whose
/// `after` and `first` are `cursor` and `limit`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, IntoParams, async_graphql::InputObject)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
#[graphql(name = "SagaFilter")]
pub struct SagaQuery {
    /// Saga type.
    #[serde(rename = "type")]
    #[param(rename = "type", min_length = 1, pattern = "^[^\\u0000]*$")]
    #[graphql(name = "type")]
    pub saga_type: Option<String>,
    /// Derived state (case-insensitive).
    #[param(inline)]
    pub status: Option<SagaState>,
    /// Sagas with an event of this step.
    #[param(min_length = 1, pattern = "^[^\\u0000]*$")]
    pub step: Option<String>,
    /// Sagas with an event recorded by this service.
    #[param(min_length = 1, pattern = "^[^\\u0000]*$")]
    pub service: Option<String>,
    /// Started at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Started before (RFC 3339); before `from` gives an empty page.
    pub to: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page; empty = the first page.
    #[graphql(skip)]
    #[param(pattern = "^((-[0-9]{1,16}|[0-9]{1,17})_([0-9a-f][1-9a-f]|[1-9a-f]0)*)?$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500.
    #[graphql(skip)]
    #[param(minimum = 1, maximum = 500, default = 50)]
    pub limit: Option<i64>,
}

/// Why a query or path was refused (the message of a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Checks a text parameter or path segment: non-empty and no NUL character.
pub fn check_text(name: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid(format!("`{name}` must not be empty")));
    }
    if value.contains('\0') {
        return Err(Invalid(format!(
            "`{name}` must not contain a NUL character"
        )));
    }
    Ok(())
}

/// Times PostgreSQL and RFC 3339 both hold: years 0 to 9999.
fn check_time(name: &str, t: DateTime<Utc>) -> Result<DateTime<Utc>, Invalid> {
    if (0..=9999).contains(&t.year()) {
        Ok(t)
    } else {
        Err(Invalid(format!(
            "`{name}`: {t} is outside the years 0 to 9999"
        )))
    }
}

impl SagaQuery {
    /// Checks every parameter, so the database only sees values it accepts.
    pub fn into_filter(self) -> Result<crate::db::SagaFilter, Invalid> {
        for (name, value) in [
            ("type", &self.saga_type),
            ("step", &self.step),
            ("service", &self.service),
        ] {
            if let Some(v) = value {
                check_text(name, v)?;
            }
        }
        let limit = check_limit(self.limit, DEFAULT_LIMIT)?;
        let cursor = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => {
                let cursor = Cursor::decode(c).ok_or_else(|| {
                    Invalid(format!(
                        "`cursor`: `{}` is not a cursor from next_cursor",
                        c.escape_debug()
                    ))
                })?;
                check_time("cursor", cursor.started_at)?;
                Some(cursor)
            }
        };
        // `from` after `to` is a valid query whose answer is empty.
        let from = self.from.map(|t| check_time("from", t)).transpose()?;
        let to = self.to.map(|t| check_time("to", t)).transpose()?;
        Ok(crate::db::SagaFilter {
            saga_type: self.saga_type,
            status: self.status,
            step: self.step,
            service: self.service,
            from,
            to,
            cursor,
            limit,
        })
    }
}

/// The query of `GET /api/v1/overview`. An unknown parameter is a 400.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// The window: events recorded in the last `minutes` minutes, 1 to 1440, in 60 buckets.
    #[param(minimum = 1, maximum = 1440, default = 60)]
    pub minutes: Option<u32>,
}

/// The longest overview window, minutes (a day).
pub const MAX_OVERVIEW_MINUTES: u32 = 1440;

impl OverviewQuery {
    /// The window in minutes (default 60); outside 1 to [`MAX_OVERVIEW_MINUTES`] is a 400.
    pub fn minutes(&self) -> Result<u32, Invalid> {
        match self.minutes {
            None => Ok(60),
            Some(n) if (1..=MAX_OVERVIEW_MINUTES).contains(&n) => Ok(n),
            Some(n) => Err(Invalid(format!(
                "`minutes`: {n} is not between 1 and {MAX_OVERVIEW_MINUTES}"
            ))),
        }
    }
}

/// The query of `GET /api/v1/search`. An unknown parameter is a 400.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// A saga id, an order id or a trace id (exact match).
    #[param(min_length = 1, pattern = "^[^\\u0000]*$")]
    pub q: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<crate::db::SagaFilter, String> {
        let uri: axum::http::Uri = format!("/api/v1/sagas?{query}").parse().expect("uri");
        let axum::extract::Query(q) =
            axum::extract::Query::<SagaQuery>::try_from_uri(&uri).map_err(|e| e.body_text())?;
        q.into_filter().map_err(|e| e.0)
    }

    #[test]
    fn filter_parsing() {
        let f = parse("status=failed&limit=500&from=2024-11-24T00:00:00Z").expect("ok");
        assert_eq!(f.status, Some(SagaState::Failed));
        assert_eq!(f.limit, MAX_LIMIT);
        assert_eq!(parse("").expect("ok").limit, DEFAULT_LIMIT);
        assert_eq!(parse("cursor=").expect("empty cursor").cursor, None);
        for bad in [
            "limit=0",
            "limit=501",
            "limit=ten",
            "status=DONE",
            "from=yesterday",
            "cursor=zz",
            "typo=x",
            "type=",
            "type=a%00b",
            "step=%00",
            "service=x%00",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // a cursor whose time PostgreSQL cannot hold
        let far = Cursor {
            started_at: DateTime::<Utc>::MIN_UTC,
            saga_id: "x".into(),
        };
        let err = parse(&format!("cursor={}", far.encode())).expect_err("far past");
        assert!(err.contains("not a cursor"), "{err}");
        assert!(
            parse("from=2024-11-25T00:00:00Z&to=2024-11-24T00:00:00Z").is_ok(),
            "an empty range is a valid query"
        );
    }

    #[test]
    fn the_documented_cursor_pattern_is_the_decoders() {
        let doc = crate::api::openapi::json();
        let params = doc["paths"]["/api/v1/sagas"]["get"]["parameters"]
            .as_array()
            .expect("parameters");
        let cursor = params
            .iter()
            .find(|p| p["name"] == "cursor")
            .expect("cursor");
        assert_eq!(cursor["schema"]["pattern"], Cursor::PATTERN);
        for (text, ok) in [
            ("1732406400000001_613a62", true),
            ("-5_", true),
            ("12345678901234567_ff", true),
            ("123456789012345678_61", false),
            ("1_00", false),
            ("1_6100", false),
            ("1_AB", false),
            ("x_61", false),
            ("_61", false),
        ] {
            assert_eq!(Cursor::decode(text).is_some(), ok, "{text}");
        }
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
