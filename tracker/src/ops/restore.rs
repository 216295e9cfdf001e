//! `restore`: loads archived days back into `saga_events` (rows marked `restored`), recomputes the `sagas` rows
//! of the sagas they touch (marked `restored`), so the API serves them again. Idempotent: a row already
//! online is skipped (same primary key), and the derived rows come out the same.
//!
//! A restored day stays online for `archive --keep-restored-days` (default 7) after the restore, then the
//! next `archive` run drops it again (its archive already holds it).

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use super::cold::{self, ColdStore};
use super::day::days;
use super::{OpsError, partitions, progress};

/// Rows inserted per statement.
const CHUNK: usize = 1000;

/// What `restore` loads.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// First day (UTC).
    pub from: NaiveDate,
    /// Last day, inclusive.
    pub to: NaiveDate,
    /// Only this saga's events.
    pub saga_id: Option<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreSummary {
    /// Days with an archive.
    pub days_found: Vec<NaiveDate>,
    /// Days of the range without an archive.
    pub days_missing: Vec<NaiveDate>,
    /// Events read from the archives (after the saga filter).
    pub events_read: u64,
    /// Events inserted (the rest were online already).
    pub events_inserted: u64,
    /// Sagas whose summary was recomputed.
    pub sagas: u64,
}

/// Runs `restore`.
pub async fn run(
    pool: &PgPool,
    cold: &ColdStore,
    options: &RestoreOptions,
) -> Result<RestoreSummary, OpsError> {
    if options.from > options.to {
        return Err(OpsError::Input(format!(
            "--from {} is after --to {}",
            options.from, options.to
        )));
    }
    let span = (options.to - options.from).num_days() + 1;
    let mut summary = RestoreSummary::default();
    let mut sagas: Vec<String> = Vec::new();
    let bar = progress::bar(u64::try_from(span).unwrap_or(0), "restore");
    for day in days(options.from, options.to) {
        bar.set_message(day.to_string());
        let Some(bytes) = cold.get_day(day).await? else {
            summary.days_missing.push(day);
            bar.inc(1);
            continue;
        };
        summary.days_found.push(day);
        let bad = |reason: String| OpsError::BadArchive {
            path: cold.day_path(day).to_string(),
            reason,
        };
        // the whole file reads before anything is inserted
        cold::check_container(&bytes).map_err(bad)?;
        let mut day_rows = 0u64;
        let mut chunk: Vec<Value> = Vec::with_capacity(CHUNK);
        let mut records = cold::records(&bytes).map_err(bad)?.peekable();
        let mut partition_ready = false;
        while let Some(event) = records.next() {
            let event = event.map_err(bad)?;
            if options
                .saga_id
                .as_ref()
                .is_none_or(|id| *id == event.saga_id)
            {
                chunk.push(event.to_row_json().map_err(bad)?);
            }
            if chunk.len() == CHUNK || (records.peek().is_none() && !chunk.is_empty()) {
                if !partition_ready {
                    partitions::ensure(pool, day).await?;
                    partition_ready = true;
                }
                let inserted: Vec<String> = sqlx::query_scalar(
                    "INSERT INTO saga_events
                     SELECT (jsonb_populate_record(NULL::saga_events, r)).* FROM unnest($1::jsonb[]) AS r
                     ON CONFLICT DO NOTHING RETURNING saga_id",
                )
                .bind(&chunk)
                .fetch_all(pool)
                .await?;
                summary.events_inserted += inserted.len() as u64;
                day_rows += chunk.len() as u64;
                sagas.extend(
                    chunk.iter().filter_map(|r| {
                        r.get("saga_id").and_then(Value::as_str).map(str::to_owned)
                    }),
                );
                sagas.sort();
                sagas.dedup();
                chunk.clear();
            }
        }
        summary.events_read += day_rows;
        if day_rows > 0 && options.saga_id.is_none() {
            sqlx::query(
                "INSERT INTO restored_days (day, events) VALUES ($1, $2)
                 ON CONFLICT (day) DO UPDATE SET restored_at = now(), events = EXCLUDED.events",
            )
            .bind(day)
            .bind(i64::try_from(day_rows).unwrap_or(i64::MAX))
            .execute(pool)
            .await?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    sagas.sort();
    sagas.dedup();
    for chunk in sagas.chunks(CHUNK) {
        let mut tx = pool.begin().await?;
        crate::db::recompute_sagas(&mut tx, chunk).await?;
        // The summary as it was: last_ingested_at is the newest ingested_at of the saga's events.
        sqlx::query(
            "UPDATE sagas s SET restored = true, last_ingested_at = m.at
             FROM (SELECT saga_id, max(ingested_at) AS at FROM saga_events WHERE saga_id = ANY($1)
                   GROUP BY saga_id) m
             WHERE s.saga_id = m.saga_id",
        )
        .bind(chunk)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    summary.sagas = sagas.len() as u64;
    if summary.days_found.is_empty() {
        return Err(OpsError::Input(format!(
            "no archive between {} and {} in {}",
            options.from, options.to, cold.url
        )));
    }
    Ok(summary)
}
