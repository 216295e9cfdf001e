//! What the operator console's overview and search box ask the database: events, failures and compensation
//! failures per time bucket, the slowest steps (p50/p99 of the handlers' durations), and the sagas an id, order id
//! or trace id names.

use chrono::{DateTime, Utc};
use saga_tracker_core::StepStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::SagaRow;
use super::store::Store;

/// Events recorded in one time bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Bucket {
    /// The bucket's start (inclusive).
    pub start: DateTime<Utc>,
    /// Events recorded in the bucket.
    pub events: i64,
    /// `FAILED` events (a step's attempt failed).
    pub failures: i64,
    /// `COMPENSATION_FAILED` events (a compensation's attempt failed).
    pub compensation_failures: i64,
}

/// The duration percentiles of one step's finished attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct StepLatency {
    /// The saga type.
    pub saga_type: String,
    /// The step.
    pub step: String,
    /// Finished attempts with a duration in the window.
    pub count: i64,
    /// Median duration, microseconds.
    pub p50_micros: f64,
    /// 99th percentile duration, microseconds.
    pub p99_micros: f64,
}

/// `GET /api/v1/overview`: activity over a recent window, by recording time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Overview {
    /// The window's start (events recorded at or after it are counted).
    pub since: DateTime<Utc>,
    /// The width of each bucket, seconds.
    pub bucket_seconds: u32,
    /// Buckets that hold at least one event, oldest first (a missing bucket had none).
    pub buckets: Vec<Bucket>,
    /// The slowest steps by p99 of finished attempts (`SUCCEEDED`, `FAILED`) in the window, slowest first.
    pub slowest_steps: Vec<StepLatency>,
}

/// How many steps [`Overview::slowest_steps`] lists.
pub const SLOWEST_STEPS: i64 = 10;

/// How many sagas a search returns at most.
pub const SEARCH_LIMIT: i64 = 50;

impl Store {
    /// Activity since `since` in buckets of `bucket_seconds` (aligned to `since`).
    pub async fn overview(
        &self,
        since: DateTime<Utc>,
        bucket_seconds: u32,
    ) -> Result<Overview, sqlx::Error> {
        let buckets: Vec<Bucket> = sqlx::query_as(
            "SELECT date_bin(make_interval(secs => $2), recorded_at, $1) AS start,
                    count(*) AS events,
                    count(*) FILTER (WHERE status = $3) AS failures,
                    count(*) FILTER (WHERE status = $4) AS compensation_failures
             FROM saga_events WHERE recorded_at >= $1
             GROUP BY 1 ORDER BY 1",
        )
        .bind(since)
        .bind(f64::from(bucket_seconds))
        .bind(StepStatus::Failed.as_str())
        .bind(StepStatus::CompensationFailed.as_str())
        .fetch_all(self.pool())
        .await?;
        let slowest_steps: Vec<StepLatency> = sqlx::query_as(
            "SELECT saga_type, step, count(*) AS count,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_micros) AS p50_micros,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_micros) AS p99_micros
             FROM saga_events
             WHERE recorded_at >= $1 AND duration_micros IS NOT NULL AND status = ANY($2)
             GROUP BY saga_type, step
             ORDER BY p99_micros DESC, saga_type, step LIMIT $3",
        )
        .bind(since)
        .bind([StepStatus::Succeeded.as_str(), StepStatus::Failed.as_str()])
        .bind(SLOWEST_STEPS)
        .fetch_all(self.pool())
        .await?;
        Ok(Overview {
            since,
            bucket_seconds,
            buckets,
            slowest_steps,
        })
    }

    /// The sagas whose id or order id is `text`, or with an event carrying trace id `text` (metadata
    /// `traceId`), newest first, at most [`SEARCH_LIMIT`].
    pub async fn search(&self, text: &str) -> Result<Vec<SagaRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT * FROM sagas
             WHERE saga_id = $1 OR order_id = $1
                OR saga_id IN (SELECT saga_id FROM saga_events WHERE metadata->>'traceId' = $1)
             ORDER BY started_at DESC, saga_id DESC LIMIT $2",
        )
        .bind(text)
        .bind(SEARCH_LIMIT)
        .fetch_all(self.pool())
        .await
    }
}
