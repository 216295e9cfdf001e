//! [`Store`]: the connection pool, migrations, the batch writer and the read queries.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_tracker_core::SagaEvent;
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::model::{EventRow, SagaRow};
use super::state::{self, EventFacts};
use crate::config::is_identifier;

/// The versioned migrations in `tracker/migrations`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Why the store could not start.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL does not parse.
    #[error("invalid DATABASE_URL: {0}")]
    Url(#[source] sqlx::Error),
    /// The schema name is not a plain identifier.
    #[error("database schema `{0}` is not a plain identifier")]
    BadSchema(String),
    /// The database is unreachable or refused.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A decoded event and where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingEvent {
    /// The event.
    pub event: SagaEvent,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// Filters of `GET /api/v1/sagas`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SagaFilter {
    /// Saga type.
    pub saga_type: Option<String>,
    /// Derived state name.
    pub status: Option<String>,
    /// Sagas with an event of this step.
    pub step: Option<String>,
    /// Sagas with an event recorded by this service.
    pub service: Option<String>,
    /// Started at or after.
    pub from: Option<DateTime<Utc>>,
    /// Started before.
    pub to: Option<DateTime<Utc>>,
    /// Continue after this position.
    pub cursor: Option<Cursor>,
    /// Page size.
    pub limit: i64,
}

/// A keyset position: the last row of the previous page (sagas are listed newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// `started_at` of the last row.
    pub started_at: DateTime<Utc>,
    /// `saga_id` of the last row.
    pub saga_id: String,
}

impl Cursor {
    /// The opaque text form: hex of `{micros}:{saga_id}`.
    pub fn encode(&self) -> String {
        hex::encode(format!(
            "{}:{}",
            self.started_at.timestamp_micros(),
            self.saga_id
        ))
    }

    /// Parses [`Cursor::encode`]'s output.
    pub fn decode(s: &str) -> Option<Cursor> {
        let text = String::from_utf8(hex::decode(s).ok()?).ok()?;
        let (micros, saga_id) = text.split_once(':')?;
        Some(Cursor {
            started_at: DateTime::from_timestamp_micros(i64::from_str(micros).ok()?)?,
            saga_id: saga_id.to_owned(),
        })
    }
}

/// One page of sagas.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaPage {
    /// The sagas, newest first.
    pub items: Vec<SagaRow>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

#[derive(Serialize)]
struct SagaUpsert<'a> {
    saga_id: &'a str,
    saga_type: String,
    status: &'static str,
    order_id: Option<String>,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    failed_step: Option<String>,
    pending_compensations: Vec<String>,
    steps: Vec<String>,
    services: Vec<String>,
    event_count: i64,
}

impl Store {
    /// Connects, creates `schema` if given (and puts it first on the `search_path` of every connection),
    /// and runs the migrations.
    pub async fn connect(
        url: &str,
        schema: Option<&str>,
        max_connections: u32,
    ) -> Result<Store, StoreError> {
        let mut options = PgConnectOptions::from_str(url).map_err(StoreError::Url)?;
        if let Some(schema) = schema {
            if !is_identifier(schema) {
                return Err(StoreError::BadSchema(schema.to_owned()));
            }
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        if let Some(schema) = schema {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&pool)
                .await
                .map_err(StoreError::Connect)?;
        }
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes a batch in one transaction: appends the events (a known event id is skipped) and recomputes the
    /// `sagas` row of every saga that got a new event. Returns the indices (into `batch`) of the events that
    /// were new.
    pub async fn write_batch(&self, batch: &[IncomingEvent]) -> Result<Vec<usize>, sqlx::Error> {
        let mut seen = HashSet::new();
        let unique: Vec<usize> = (0..batch.len())
            .filter(|&i| seen.insert(batch[i].event.event_id))
            .collect();
        if unique.is_empty() {
            return Ok(Vec::new());
        }
        let col = |f: &dyn Fn(&IncomingEvent) -> String| {
            unique.iter().map(|&i| f(&batch[i])).collect::<Vec<_>>()
        };
        let ids: Vec<Uuid> = unique.iter().map(|&i| batch[i].event.event_id).collect();
        let recorded_at: Vec<DateTime<Utc>> = unique
            .iter()
            .map(|&i| micros_to_datetime(batch[i].event.recorded_at))
            .collect();
        let mut tx = self.pool.begin().await?;
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO saga_events (event_id, idempotency_key, saga_id, saga_type, step, status, attempt, order_id,
                 service, recorded_at, duration_micros, error_kind, error_message, metadata, kafka_topic,
                 kafka_partition, kafka_offset)
             SELECT t.id, t.key, t.saga, t.ty, t.step, t.status, t.attempt, t.order_id, t.service, t.at, t.dur,
                 t.ek, t.em, t.meta::jsonb, t.topic, t.part, t.off
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int4[],
                 $8::text[], $9::text[], $10::timestamptz[], $11::int8[], $12::text[], $13::text[], $14::text[],
                 $15::text[], $16::int4[], $17::int8[])
                 AS t(id, key, saga, ty, step, status, attempt, order_id, service, at, dur, ek, em, meta, topic, part, off)
             ON CONFLICT (event_id) DO NOTHING
             RETURNING event_id",
        )
        .bind(&ids)
        .bind(col(&|e| e.event.idempotency_key.clone()))
        .bind(col(&|e| e.event.saga_id.clone()))
        .bind(col(&|e| e.event.saga_type.clone()))
        .bind(col(&|e| e.event.step.clone()))
        .bind(col(&|e| e.event.status.as_str().to_owned()))
        .bind(unique.iter().map(|&i| batch[i].event.attempt).collect::<Vec<i32>>())
        .bind(unique.iter().map(|&i| batch[i].event.order_id.clone()).collect::<Vec<Option<String>>>())
        .bind(col(&|e| e.event.service.clone()))
        .bind(&recorded_at)
        .bind(unique.iter().map(|&i| batch[i].event.duration_micros).collect::<Vec<Option<i64>>>())
        .bind(unique.iter().map(|&i| batch[i].event.error.as_ref().map(|e| e.kind.clone())).collect::<Vec<_>>())
        .bind(unique.iter().map(|&i| batch[i].event.error.as_ref().map(|e| e.message.clone())).collect::<Vec<_>>())
        .bind(col(&|e| serde_json::to_string(&e.event.metadata).unwrap_or_else(|_| "{}".to_owned())))
        .bind(col(&|e| e.topic.clone()))
        .bind(unique.iter().map(|&i| batch[i].partition).collect::<Vec<i32>>())
        .bind(unique.iter().map(|&i| batch[i].offset).collect::<Vec<i64>>())
        .fetch_all(&mut *tx)
        .await?;

        let inserted: HashSet<Uuid> = inserted.into_iter().collect();
        let new_indices: Vec<usize> = unique
            .into_iter()
            .filter(|&i| inserted.contains(&batch[i].event.event_id))
            .collect();
        let mut sagas: Vec<String> = new_indices
            .iter()
            .map(|&i| batch[i].event.saga_id.clone())
            .collect();
        sagas.sort();
        sagas.dedup();
        if !sagas.is_empty() {
            recompute_sagas(&mut tx, &sagas).await?;
        }
        tx.commit().await?;
        Ok(new_indices)
    }

    /// One saga's summary.
    pub async fn saga(&self, saga_id: &str) -> Result<Option<SagaRow>, sqlx::Error> {
        sqlx::query_as("SELECT * FROM sagas WHERE saga_id = $1")
            .bind(saga_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// One saga's events, unordered (see [`timeline::build`](super::timeline::build)).
    pub async fn events(&self, saga_id: &str) -> Result<Vec<EventRow>, sqlx::Error> {
        sqlx::query_as("SELECT * FROM saga_events WHERE saga_id = $1")
            .bind(saga_id)
            .fetch_all(&self.pool)
            .await
    }

    /// A page of sagas, newest first, with keyset pagination.
    pub async fn list(&self, filter: &SagaFilter) -> Result<SagaPage, sqlx::Error> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM sagas WHERE TRUE");
        if let Some(v) = &filter.saga_type {
            q.push(" AND saga_type = ").push_bind(v.clone());
        }
        if let Some(v) = &filter.status {
            q.push(" AND status = ").push_bind(v.clone());
        }
        if let Some(v) = &filter.step {
            q.push(" AND steps @> ARRAY[")
                .push_bind(v.clone())
                .push("]::text[]");
        }
        if let Some(v) = &filter.service {
            q.push(" AND services @> ARRAY[")
                .push_bind(v.clone())
                .push("]::text[]");
        }
        if let Some(v) = filter.from {
            q.push(" AND started_at >= ").push_bind(v);
        }
        if let Some(v) = filter.to {
            q.push(" AND started_at < ").push_bind(v);
        }
        if let Some(c) = &filter.cursor {
            q.push(" AND (started_at, saga_id) < (")
                .push_bind(c.started_at)
                .push(", ")
                .push_bind(c.saga_id.clone())
                .push(")");
        }
        q.push(" ORDER BY started_at DESC, saga_id DESC LIMIT ")
            .push_bind(filter.limit + 1);
        let mut items: Vec<SagaRow> = q.build_query_as().fetch_all(&self.pool).await?;
        let more = items.len() as i64 > filter.limit;
        items.truncate(usize::try_from(filter.limit).unwrap_or(0));
        let next_cursor = match items.last() {
            Some(last) if more => Some(
                Cursor {
                    started_at: last.started_at,
                    saga_id: last.saga_id.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(SagaPage { items, next_cursor })
    }

    /// Saga count per derived state (states without sagas are absent).
    pub async fn sagas_by_state(&self) -> Result<BTreeMap<String, i64>, sqlx::Error> {
        let rows = sqlx::query("SELECT status, count(*) AS n FROM sagas GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }

    /// Sagas that are not terminal and whose latest event is older than `silent_for`.
    pub async fn stuck_sagas(&self, silent_for: Duration) -> Result<i64, sqlx::Error> {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(silent_for).unwrap_or(chrono::Duration::MAX);
        sqlx::query_scalar(
            "SELECT count(*) FROM sagas WHERE status NOT IN ('SUCCEEDED', 'COMPENSATED', 'COMPENSATION_FAILED')
             AND updated_at < $1",
        )
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await
    }

    /// Stored events in total.
    pub async fn event_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM saga_events")
            .fetch_one(&self.pool)
            .await
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// Locks the sagas (in hash order, so two writers cannot deadlock), reloads their events and upserts the
/// derived rows. See [`state`](super::state) for why the state is recomputed rather than merged.
async fn recompute_sagas(tx: &mut sqlx::PgConnection, sagas: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM
             (SELECT DISTINCT hashtextextended(id, 0) AS k FROM unnest($1::text[]) AS id ORDER BY k) AS keys",
    )
    .bind(sagas)
    .execute(&mut *tx)
    .await?;
    let rows = sqlx::query(
        "SELECT event_id, saga_id, saga_type, step, status, attempt, order_id, service, recorded_at
         FROM saga_events WHERE saga_id = ANY($1)",
    )
    .bind(sagas)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_saga: BTreeMap<String, Vec<EventFacts>> = BTreeMap::new();
    for r in rows {
        let status: String = r.try_get("status")?;
        by_saga
            .entry(r.try_get("saga_id")?)
            .or_default()
            .push(EventFacts {
                event_id: r.try_get("event_id")?,
                saga_type: r.try_get("saga_type")?,
                step: r.try_get("step")?,
                status: state::parse_status(&status),
                attempt: r.try_get("attempt")?,
                order_id: r.try_get("order_id")?,
                service: r.try_get("service")?,
                recorded_at: r.try_get("recorded_at")?,
            });
    }
    let upserts: Vec<SagaUpsert<'_>> = by_saga
        .iter()
        .filter_map(|(id, events)| {
            state::derive(events).map(|d| SagaUpsert {
                saga_id: id,
                saga_type: d.saga_type,
                status: d.status.as_str(),
                order_id: d.order_id,
                started_at: d.started_at,
                updated_at: d.updated_at,
                failed_step: d.failed_step,
                pending_compensations: d.pending_compensations,
                steps: d.steps,
                services: d.services,
                event_count: i64::try_from(d.event_count).unwrap_or(i64::MAX),
            })
        })
        .collect();
    let json = serde_json::to_value(&upserts).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO sagas (saga_id, saga_type, status, order_id, started_at, updated_at, failed_step,
             pending_compensations, steps, services, event_count, last_ingested_at)
         SELECT saga_id, saga_type, status, order_id, started_at, updated_at, failed_step,
             pending_compensations, steps, services, event_count, now()
         FROM jsonb_to_recordset($1) AS x(saga_id text, saga_type text, status text, order_id text,
             started_at timestamptz, updated_at timestamptz, failed_step text, pending_compensations text[],
             steps text[], services text[], event_count int4)
         ON CONFLICT (saga_id) DO UPDATE SET saga_type = EXCLUDED.saga_type, status = EXCLUDED.status,
             order_id = EXCLUDED.order_id, started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
             failed_step = EXCLUDED.failed_step, pending_compensations = EXCLUDED.pending_compensations,
             steps = EXCLUDED.steps, services = EXCLUDED.services, event_count = EXCLUDED.event_count,
             last_ingested_at = EXCLUDED.last_ingested_at",
    )
    .bind(json)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The event time as a timestamp; the ingest validation keeps `recorded_at` within years 1..=9999, so the
/// fallback (the epoch) is unreachable for stored events.
pub(crate) fn micros_to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}
