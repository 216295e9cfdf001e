//! [`Store`]: the connection pool, migrations, the batch writer and the read queries.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_tracker_core::SagaEvent;
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::copy;
use super::derived;
use super::model::{EventRow, SagaRow, SagaState};
use super::statistics::Analyzer;
use super::summary::Summary;
use super::timeline::TimelineCursor;
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

/// The most sagas [`Store::write`] writes in one transaction: the advisory locks a transaction holds, one per
/// saga, stay within what the default `max_locks_per_transaction` (64 × `max_connections`) leaves for several
/// writers (the bound of the former default batch of 500 events).
pub const MAX_SAGAS_PER_TRANSACTION: usize = 500;

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
    /// Derived state.
    pub status: Option<SagaState>,
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
    /// The shape of every cursor [`Cursor::decode`] accepts (the OpenAPI document's `pattern`): microseconds
    /// since the epoch (at most 16 digits before the epoch and 17 after, so years 1653 to 5138: inside the years 0
    /// to 9999 every cursor time is checked against), `_`, and the
    /// saga id in lowercase hex without a zero byte. Empty is no cursor.
    pub const PATTERN: &'static str =
        "^((-[0-9]{1,16}|[0-9]{1,17})_([0-9a-f][1-9a-f]|[1-9a-f]0)*)?$";

    /// The opaque text form: `{micros}_{hex of the saga id}`.
    pub fn encode(&self) -> String {
        format!(
            "{}_{}",
            self.started_at.timestamp_micros(),
            hex::encode(&self.saga_id)
        )
    }

    /// Parses any text of the shape [`Cursor::PATTERN`] (non-empty): a position between sagas. An id that is not
    /// UTF-8 is read with replacement characters (still a position); no accepted cursor can make the database
    /// fail.
    pub fn decode(s: &str) -> Option<Cursor> {
        let (micros, id) = s.split_once('_')?;
        let digits = micros.strip_prefix('-').unwrap_or(micros);
        if digits.is_empty() || digits.len() > 17 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if id.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let bytes = hex::decode(id).ok()?;
        if bytes.contains(&0) {
            return None;
        }
        Some(Cursor {
            started_at: DateTime::from_timestamp_micros(i64::from_str(micros).ok()?)?,
            saga_id: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// One page of sagas.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SagaPage {
    /// The sagas, newest first.
    pub items: Vec<SagaRow>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    schema: Option<String>,
    analyzer: Arc<Analyzer>,
    max_events_per_saga: Option<u32>,
}

/// What [`Store::write`] did with a batch: indices (into the batch) of the events stored as new, and of those
/// refused because their saga holds `--max-events-per-saga` events. The others were duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Newly stored.
    pub new: Vec<usize>,
    /// Not stored: their saga is at the cap.
    pub too_long: Vec<usize>,
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
        // Plan each statement for its actual parameters and the table's current size: a generic plan made
        // while the tables were small would be kept for the connection's life (see `statistics`).
        options = options.options([("plan_cache_mode", "force_custom_plan")]);
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
        let analyzer = Arc::new(
            Analyzer::new(pool.clone())
                .await
                .map_err(StoreError::Connect)?,
        );
        Ok(Store {
            pool,
            schema: schema.map(str::to_owned),
            analyzer,
            max_events_per_saga: None,
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `ANALYZE` runs this process started and finished as the tables grew (see [`statistics`](super::statistics)).
    pub fn analyses(&self) -> u64 {
        self.analyzer.analyses()
    }

    /// Caps the events stored per saga (`--max-events-per-saga`): [`Store::write`] stores no event of a saga
    /// that holds `max` events and reports it in [`Written::too_long`]. No cap by default.
    pub fn with_max_events_per_saga(mut self, max: Option<u32>) -> Store {
        self.max_events_per_saga = max;
        self
    }

    /// The cap set by [`Store::with_max_events_per_saga`].
    pub fn max_events_per_saga(&self) -> Option<u32> {
        self.max_events_per_saga
    }

    /// Writes a batch in one transaction: appends the events (a known event id is skipped) and updates the
    /// `sagas` row and summary of every saga that got a new event. Returns the indices (into `batch`) of the
    /// events that were new; events over the per-saga cap are not stored (see [`Store::write`]).
    pub async fn write_batch(&self, batch: &[IncomingEvent]) -> Result<Vec<usize>, sqlx::Error> {
        Ok(self.write(batch).await?.new)
    }

    /// Writes a batch (see [`Store::write_batch`]); reports the new events and those refused because their saga
    /// reached `--max-events-per-saga`. The batch's sagas are locked first, their summaries read, the events
    /// appended, and each summary merged with its new events only, so a batch costs the same whatever the length of
    /// its sagas (see [`summary`](super::summary)). One transaction per [`MAX_SAGAS_PER_TRANSACTION`] sagas (all
    /// the events of a saga in the same one): each saga holds an advisory lock until its transaction ends, and
    /// PostgreSQL's lock table is shared by every connection (`max_locks_per_transaction` × `max_connections`).
    pub async fn write(&self, batch: &[IncomingEvent]) -> Result<Written, sqlx::Error> {
        let mut seen = HashSet::new();
        let unique: Vec<usize> = (0..batch.len())
            .filter(|&i| seen.insert(batch[i].event.event_id))
            .collect();
        if unique.is_empty() {
            return Ok(Written::default());
        }
        let mut sagas: Vec<&str> = unique
            .iter()
            .map(|&i| batch[i].event.saga_id.as_str())
            .collect();
        sagas.sort_unstable();
        sagas.dedup();
        if sagas.len() <= MAX_SAGAS_PER_TRANSACTION {
            return self.write_sagas(batch, unique, &sagas).await;
        }
        let mut written = Written::default();
        for part in sagas.chunks(MAX_SAGAS_PER_TRANSACTION) {
            let events: Vec<usize> = unique
                .iter()
                .copied()
                .filter(|&i| part.binary_search(&batch[i].event.saga_id.as_str()).is_ok())
                .collect();
            let w = self.write_sagas(batch, events, part).await?;
            written.new.extend(w.new);
            written.too_long.extend(w.too_long);
        }
        Ok(written)
    }

    /// Writes the events `unique` (indices into `batch`, distinct event ids) of the sagas `sagas` (sorted, distinct)
    /// in one transaction, with a `COPY` of the events not yet stored ([`Insert::Unstored`]). Should the
    /// database hold an event the batch's sagas did not account for (stored by a writer that does not take the
    /// saga locks, such as `restore`, or under another saga's id), that insert fails with a unique violation
    /// and changes nothing: the batch is then written again in a new transaction with `ON CONFLICT DO NOTHING`
    /// ([`Insert::SkipStored`]), which stores and reports exactly what the `COPY` would have.
    async fn write_sagas(
        &self,
        batch: &[IncomingEvent],
        unique: Vec<usize>,
        sagas: &[&str],
    ) -> Result<Written, sqlx::Error> {
        let sagas: Vec<String> = sagas.iter().map(|s| (*s).to_owned()).collect();
        match self
            .write_sagas_as(batch, &unique, &sagas, Insert::Unstored)
            .await
        {
            Err(e) if is_unique_violation(&e) => {
                tracing::debug!(error = %e, "a batch's event was stored unbeknown to its saga; writing it again with ON CONFLICT");
                self.write_sagas_as(batch, &unique, &sagas, Insert::SkipStored)
                    .await
            }
            result => result,
        }
    }

    async fn write_sagas_as(
        &self,
        batch: &[IncomingEvent],
        unique: &[usize],
        sagas: &[String],
        insert: Insert,
    ) -> Result<Written, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        derived::lock(&mut tx, sagas).await?;
        let derived::Loaded {
            mut summaries,
            rebuilt,
            rebuilt_events,
        } = derived::load(&mut tx, sagas).await?;
        let (unique, too_long) = match self.max_events_per_saga {
            Some(max) => {
                derived::admit(&mut tx, batch, unique.to_vec(), &summaries, i64::from(max)).await?
            }
            None => (unique.to_vec(), Vec::new()),
        };
        let new_indices = match insert {
            _ if unique.is_empty() => Vec::new(),
            Insert::SkipStored => {
                insert_events(&mut tx, batch, &unique, Insert::SkipStored).await?
            }
            Insert::Unstored => {
                let unstored = unstored(
                    &mut tx,
                    batch,
                    &unique,
                    &summaries,
                    &rebuilt,
                    &rebuilt_events,
                )
                .await?;
                if unstored.is_empty() {
                    unstored
                } else {
                    insert_events(&mut tx, batch, &unstored, Insert::Unstored).await?
                }
            }
        };
        let mut changed: Vec<String> = Vec::new();
        for &i in &new_indices {
            let facts = derived::facts_of(&batch[i].event);
            match summaries.get_mut(&batch[i].event.saga_id) {
                Some(s) => s.add(&facts),
                None => {
                    summaries.insert(batch[i].event.saga_id.clone(), Summary::of(&facts));
                }
            }
            changed.push(batch[i].event.saga_id.clone());
        }
        changed.sort();
        changed.dedup();
        if !changed.is_empty() {
            derived::upsert(
                &mut tx,
                changed.iter().filter_map(|id| summaries.get_key_value(id)),
            )
            .await?;
        }
        tx.commit().await?;
        self.analyzer.stored(new_indices.len());
        Ok(Written {
            new: new_indices,
            too_long,
        })
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

    /// The events of several sagas at once, unordered (GraphQL loads the timelines of a page's sagas with one
    /// query).
    pub async fn events_of(&self, saga_ids: &[String]) -> Result<Vec<EventRow>, sqlx::Error> {
        sqlx::query_as("SELECT * FROM saga_events WHERE saga_id = ANY($1)")
            .bind(saga_ids)
            .fetch_all(&self.pool)
            .await
    }

    /// One page of a saga's timeline: up to `limit` events after `after` in timeline order (time, status
    /// order, event id), whether more follow, and every `FAILED` and compensation event of the saga (to link the
    /// page's entries; see [`timeline::build_page`](super::timeline::build_page)).
    pub async fn timeline_page(
        &self,
        saga_id: &str,
        after: Option<TimelineCursor>,
        limit: i64,
    ) -> Result<(Vec<EventRow>, bool, Vec<EventRow>), sqlx::Error> {
        let rank = "CASE status WHEN 'STARTED' THEN 0 WHEN 'SUCCEEDED' THEN 1 WHEN 'FAILED' THEN 2
                 WHEN 'COMPENSATION_STARTED' THEN 3 WHEN 'COMPENSATED' THEN 4 WHEN 'COMPENSATION_FAILED' THEN 5
                 ELSE 6 END";
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT * FROM (SELECT *, {rank} AS timeline_rank FROM saga_events WHERE saga_id = "
        ));
        q.push_bind(saga_id);
        if let Some(c) = &after {
            // the index on (saga_id, recorded_at) bounds the scan; the row comparison breaks ties
            q.push(" AND recorded_at >= ")
                .push_bind(c.recorded_at)
                .push(") e WHERE (recorded_at, timeline_rank, event_id) > (")
                .push_bind(c.recorded_at)
                .push(", ")
                .push_bind(TimelineCursor::rank(c.status))
                .push(", ")
                .push_bind(c.event_id)
                .push(")");
        } else {
            q.push(") e");
        }
        q.push(" ORDER BY recorded_at, timeline_rank, event_id LIMIT ")
            .push_bind(limit + 1);
        let mut page: Vec<EventRow> = q.build_query_as().fetch_all(&self.pool).await?;
        let more = page.len() as i64 > limit;
        page.truncate(usize::try_from(limit).unwrap_or(0));
        let links = if page.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT * FROM saga_events WHERE saga_id = $1
                 AND status IN ('FAILED', 'COMPENSATION_STARTED', 'COMPENSATED', 'COMPENSATION_FAILED')",
            )
            .bind(saga_id)
            .fetch_all(&self.pool)
            .await?
        };
        Ok((page, more, links))
    }

    /// A page of sagas, newest first, with keyset pagination.
    pub async fn list(&self, filter: &SagaFilter) -> Result<SagaPage, sqlx::Error> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM sagas WHERE TRUE");
        if let Some(v) = &filter.saga_type {
            q.push(" AND saga_type = ").push_bind(v.clone());
        }
        if let Some(v) = &filter.status {
            q.push(" AND status = ").push_bind(*v);
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
    pub async fn sagas_by_state(&self) -> Result<BTreeMap<SagaState, i64>, sqlx::Error> {
        let rows: Vec<(SagaState, i64)> =
            sqlx::query_as("SELECT status, count(*) AS n FROM sagas GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Sagas that are not terminal and whose latest event is older than `silent_for`.
    pub async fn stuck_sagas(&self, silent_for: Duration) -> Result<i64, sqlx::Error> {
        let cutoff =
            Utc::now() - chrono::Duration::from_std(silent_for).unwrap_or(chrono::Duration::MAX);
        let terminal: Vec<&str> = SagaState::terminal().map(SagaState::as_str).collect();
        sqlx::query_scalar("SELECT count(*) FROM sagas WHERE status <> ALL($1) AND updated_at < $2")
            .bind(terminal)
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

    /// How many of `event_ids` are stored.
    pub async fn count_stored(&self, event_ids: &[Uuid]) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE event_id = ANY($1)")
            .bind(event_ids)
            .fetch_one(&self.pool)
            .await
    }

    /// The schema this store was connected with (`Store::connect`'s `schema`).
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Drops the schema this store was connected with, and everything in it, then closes the pool. For
    /// throw-away stores (the demo, tests); a store connected without a schema drops nothing.
    pub async fn drop_schema(self) -> Result<(), sqlx::Error> {
        let result = match &self.schema {
            // `connect` checked the name is a plain identifier.
            Some(schema) => sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&self.pool)
                .await
                .map(|_| ()),
            None => Ok(()),
        };
        self.pool.close().await;
        result
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// Recomputes the `sagas` rows and summaries of `sagas` from all their events (after `restore` loaded events
/// back): locks them, rebuilds their summaries and upserts the derived rows.
pub(crate) async fn recompute_sagas(
    tx: &mut sqlx::PgConnection,
    sagas: &[String],
) -> Result<(), sqlx::Error> {
    derived::lock(tx, sagas).await?;
    let summaries = derived::rebuild(tx, sagas).await?;
    derived::upsert(tx, summaries.iter()).await
}

/// The event time as a timestamp; the ingest validation keeps `recorded_at` within years 1..=9999, so the
/// fallback (the epoch) is unreachable for stored events.
pub(crate) fn micros_to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// How [`insert_events`] treats an event already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Insert {
    /// The events are known not to be stored (see [`unstored`]): `COPY` (see [`copy`]), which fails with a unique
    /// violation (and stores nothing) if one is.
    Unstored,
    /// `ON CONFLICT DO NOTHING`: a stored `(event_id, recorded_at)` is skipped.
    SkipStored,
}

/// Whether `error` is a unique violation (SQLSTATE 23505).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("23505"))
}

/// The events of `unique` (indices into `batch`) that are not stored, for a batch whose sagas are locked and
/// loaded: what `ON CONFLICT DO NOTHING` would insert, found without a lookup per event. A saga whose summary was
/// rebuilt (or that is new) has exactly the stored events the rebuild read. A saga whose summary was read as stored
/// counts every one of its events, none later than the summary's latest time: an event after it is new, and only
/// the others (a redelivery, an event out of time order) are looked up by their key.
async fn unstored(
    tx: &mut sqlx::PgConnection,
    batch: &[IncomingEvent],
    unique: &[usize],
    summaries: &HashMap<String, Summary>,
    rebuilt: &HashSet<String>,
    rebuilt_events: &HashSet<(Uuid, i64)>,
) -> Result<Vec<usize>, sqlx::Error> {
    let mut new = Vec::with_capacity(unique.len());
    let mut maybe = Vec::new();
    for &i in unique {
        let e = &batch[i].event;
        let key = (
            e.event_id,
            micros_to_datetime(e.recorded_at).timestamp_micros(),
        );
        if rebuilt.contains(&e.saga_id) {
            if !rebuilt_events.contains(&key) {
                new.push(i);
            }
            continue;
        }
        match summaries.get(&e.saga_id) {
            Some(s) if key.1 > s.last => new.push(i),
            _ => maybe.push(i),
        }
    }
    if maybe.is_empty() {
        return Ok(new);
    }
    let ids: Vec<Uuid> = maybe.iter().map(|&i| batch[i].event.event_id).collect();
    let at: Vec<DateTime<Utc>> = maybe
        .iter()
        .map(|&i| micros_to_datetime(batch[i].event.recorded_at))
        .collect();
    let stored: HashSet<Uuid> = sqlx::query_scalar(
        "SELECT c.id FROM UNNEST($1::uuid[], $2::timestamptz[]) AS c(id, at)
         WHERE EXISTS (SELECT 1 FROM saga_events e WHERE e.event_id = c.id AND e.recorded_at = c.at)",
    )
    .bind(&ids)
    .bind(&at)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    new.extend(
        maybe
            .into_iter()
            .filter(|&i| !stored.contains(&batch[i].event.event_id)),
    );
    new.sort_unstable();
    Ok(new)
}

/// The event insert of [`Insert::SkipStored`] (followed by `ON CONFLICT DO NOTHING RETURNING event_id`).
macro_rules! insert_events_sql {
    () => {
        "INSERT INTO saga_events (event_id, idempotency_key, saga_id, saga_type, step, status, attempt, order_id,
             service, recorded_at, duration_micros, error_kind, error_message, metadata, kafka_topic,
             kafka_partition, kafka_offset, step_index, step_count, compensable, cause_idempotency_key)
         SELECT t.id, t.key, t.saga, t.ty, t.step, t.status, t.attempt, t.order_id, t.service, t.at, t.dur,
             t.ek, t.em, t.meta::jsonb, t.topic, t.part, t.off, t.si, t.sc, t.comp, t.cause
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int4[],
             $8::text[], $9::text[], $10::timestamptz[], $11::int8[], $12::text[], $13::text[], $14::text[],
             $15::text[], $16::int4[], $17::int8[], $18::int4[], $19::int4[], $20::bool[], $21::text[])
             AS t(id, key, saga, ty, step, status, attempt, order_id, service, at, dur, ek, em, meta, topic, part, off,
                  si, sc, comp, cause)"
    };
}

/// Appends the events `unique` (indices into `batch`, distinct event ids); returns the indices of those that
/// were new: all of them for [`Insert::Unstored`] (by `COPY`), those not already stored (by `(event_id,
/// recorded_at)`) for [`Insert::SkipStored`] (by `INSERT ... ON CONFLICT DO NOTHING`).
async fn insert_events(
    tx: &mut sqlx::PgConnection,
    batch: &[IncomingEvent],
    unique: &[usize],
    insert: Insert,
) -> Result<Vec<usize>, sqlx::Error> {
    let rows: Vec<&IncomingEvent> = unique.iter().map(|&i| &batch[i]).collect();
    let metadata: Vec<String> = rows
        .iter()
        .map(|e| serde_json::to_string(&e.event.metadata).unwrap_or_else(|_| "{}".to_owned()))
        .collect();
    if insert == Insert::Unstored {
        let at: Vec<i64> = rows
            .iter()
            .map(|e| micros_to_datetime(e.event.recorded_at).timestamp_micros())
            .collect();
        let data = copy::encode(&rows, &metadata, &at);
        let mut copy = tx.copy_in_raw(copy::COPY_EVENTS).await?;
        copy.send(data).await?;
        copy.finish().await?;
        return Ok(unique.to_vec());
    }
    let col = |f: fn(&IncomingEvent) -> &str| rows.iter().map(|e| f(e)).collect::<Vec<&str>>();
    let opt = |f: fn(&IncomingEvent) -> Option<&str>| {
        rows.iter().map(|e| f(e)).collect::<Vec<Option<&str>>>()
    };
    let ids: Vec<Uuid> = rows.iter().map(|e| e.event.event_id).collect();
    let recorded_at: Vec<DateTime<Utc>> = rows
        .iter()
        .map(|e| micros_to_datetime(e.event.recorded_at))
        .collect();
    let query = sqlx::query(concat!(
        insert_events_sql!(),
        " ON CONFLICT DO NOTHING RETURNING event_id"
    ))
    .bind(&ids)
    .bind(col(|e| &e.event.idempotency_key))
    .bind(col(|e| &e.event.saga_id))
    .bind(col(|e| &e.event.saga_type))
    .bind(col(|e| &e.event.step))
    .bind(col(|e| e.event.status.as_str()))
    .bind(rows.iter().map(|e| e.event.attempt).collect::<Vec<i32>>())
    .bind(opt(|e| e.event.order_id.as_deref()))
    .bind(col(|e| &e.event.service))
    .bind(&recorded_at)
    .bind(
        rows.iter()
            .map(|e| e.event.duration_micros)
            .collect::<Vec<Option<i64>>>(),
    )
    .bind(opt(|e| e.event.error.as_ref().map(|x| x.kind.as_str())))
    .bind(opt(|e| e.event.error.as_ref().map(|x| x.message.as_str())))
    .bind(&metadata)
    .bind(col(|e| &e.topic))
    .bind(rows.iter().map(|e| e.partition).collect::<Vec<i32>>())
    .bind(rows.iter().map(|e| e.offset).collect::<Vec<i64>>())
    .bind(
        rows.iter()
            .map(|e| e.event.step_index)
            .collect::<Vec<Option<i32>>>(),
    )
    .bind(
        rows.iter()
            .map(|e| e.event.step_count)
            .collect::<Vec<Option<i32>>>(),
    )
    .bind(
        rows.iter()
            .map(|e| e.event.compensable)
            .collect::<Vec<Option<bool>>>(),
    )
    .bind(opt(|e| e.event.cause_idempotency_key.as_deref()));
    let inserted: HashSet<Uuid> = query
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<Uuid, _>(0))
        .collect::<Result<_, _>>()?;
    Ok(unique
        .iter()
        .copied()
        .filter(|&i| inserted.contains(&batch[i].event.event_id))
        .collect())
}
