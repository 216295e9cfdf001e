//! `archive`: creates day partitions ahead of time, exports every day older than the retention to cold storage,
//! verifies the export by reading it back, and only then drops the day's partition.
//!
//! Order per day, never the other way round: split the day out of the default partition if needed → read
//! the partition's rows → merge with an archive of that day already in cold storage (late events, restored
//! days) → write the container → read it back and check its schema, its event count and that every row of
//! the partition is in it → in one transaction: block writes to the partition, check no row arrived since
//! the read, delete the `sagas` rows left without events, drop the partition.

use std::collections::HashSet;

use chrono::{Days, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use super::cold::{self, ArchivedEvent, ColdStore};
use super::day::{bounds, partition_name};
use super::{OpsError, partitions, progress};

/// What `archive` does.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Days kept online: a day is archived once it is older than this (default 90).
    pub retention_days: u32,
    /// Partitions created ahead of today.
    pub ahead_days: u32,
    /// A day restored less than this many days ago stays online.
    pub keep_restored_days: u32,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            retention_days: 90,
            ahead_days: 7,
            keep_restored_days: 7,
        }
    }
}

/// What happened to one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchivedDay {
    /// The day.
    pub day: NaiveDate,
    /// Rows the partition held.
    pub partition_rows: u64,
    /// Events in the archive file after the export (partition rows plus any already archived).
    pub archived_events: u64,
    /// Where.
    pub path: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveSummary {
    /// Partitions created ahead.
    pub partitions_created: usize,
    /// Days exported and dropped.
    pub archived: Vec<ArchivedDay>,
    /// Days kept online because they were restored recently.
    pub kept_restored: Vec<NaiveDate>,
}

/// Runs `archive` against the tracker database `pool` and the cold store.
pub async fn run(
    pool: &PgPool,
    cold: &ColdStore,
    options: &ArchiveOptions,
) -> Result<ArchiveSummary, OpsError> {
    let mut summary = ArchiveSummary {
        partitions_created: partitions::ensure_ahead(pool, options.ahead_days).await?,
        ..ArchiveSummary::default()
    };
    let today = Utc::now().date_naive();
    let cutoff = today
        .checked_sub_days(Days::new(u64::from(options.retention_days)))
        .ok_or_else(|| OpsError::Input("--retention-days reaches before year 1".into()))?;
    let mut days: Vec<NaiveDate> = partitions::day_partitions(pool)
        .await?
        .into_iter()
        .filter(|d| *d < cutoff)
        .collect();
    days.extend(partitions::default_days_before(pool, cutoff).await?);
    days.sort();
    days.dedup();
    let recently_restored: HashSet<NaiveDate> = sqlx::query_scalar(
        "SELECT day FROM restored_days WHERE restored_at > now() - make_interval(days => $1)",
    )
    .bind(i32::try_from(options.keep_restored_days).unwrap_or(i32::MAX))
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();

    let bar = progress::bar(days.len() as u64, "archive");
    for day in days {
        bar.set_message(day.to_string());
        if recently_restored.contains(&day) {
            summary.kept_restored.push(day);
        } else {
            summary.archived.push(archive_day(pool, cold, day).await?);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(summary)
}

/// Exports, verifies and drops one day.
pub async fn archive_day(
    pool: &PgPool,
    cold: &ColdStore,
    day: NaiveDate,
) -> Result<ArchivedDay, OpsError> {
    partitions::ensure(pool, day).await?;
    let name = partition_name(day);
    let rows: Vec<Value> = sqlx::query_scalar(&format!(
        "SELECT to_jsonb(e) FROM \"{name}\" e ORDER BY recorded_at, event_id"
    ))
    .fetch_all(pool)
    .await?;
    let rows: Vec<ArchivedEvent> = rows
        .into_iter()
        .map(ArchivedEvent::from_row_json)
        .collect::<Result<_, _>>()
        .map_err(|reason| OpsError::ExportNotVerified {
            day: day.to_string(),
            reason,
        })?;
    let partition_ids: HashSet<String> = rows.iter().map(|e| e.event_id.clone()).collect();
    let path = format!("{}/{}", cold.url.trim_end_matches('/'), cold.day_path(day));

    let mut archive = cold.read_day(day).await?.unwrap_or_default();
    let before = archive.len();
    let known: HashSet<String> = archive.iter().map(|e| e.event_id.clone()).collect();
    archive.extend(rows.into_iter().filter(|e| !known.contains(&e.event_id)));
    if archive.len() != before || (before == 0 && !partition_ids.is_empty()) {
        archive.sort_by(|a, b| (a.recorded_at, &a.event_id).cmp(&(b.recorded_at, &b.event_id)));
        cold.write_day(day, &archive).await?;
    }
    let expected = archive.len();

    if expected > 0 {
        verify(cold, day, expected, &partition_ids).await?;
    }
    drop_partition(pool, day, partition_ids.len()).await?;
    Ok(ArchivedDay {
        day,
        partition_rows: partition_ids.len() as u64,
        archived_events: expected as u64,
        path,
    })
}

/// Reads the day's archive back: schema, count and every partition row must be there.
async fn verify(
    cold: &ColdStore,
    day: NaiveDate,
    expected: usize,
    partition_ids: &HashSet<String>,
) -> Result<(), OpsError> {
    let not_verified = |reason: String| OpsError::ExportNotVerified {
        day: day.to_string(),
        reason,
    };
    let back = match cold.read_day(day).await {
        Ok(Some(back)) => back,
        Ok(None) => return Err(not_verified("the file is not there after writing".into())),
        Err(OpsError::BadArchive { reason, .. }) => return Err(not_verified(reason)),
        Err(e) => return Err(e),
    };
    if back.len() != expected {
        return Err(not_verified(format!(
            "{} events read back, {expected} written",
            back.len()
        )));
    }
    let ids = cold::ids(&back);
    if ids.len() != back.len() {
        return Err(not_verified("duplicate event ids in the file".into()));
    }
    if let Some(missing) = partition_ids.iter().find(|id| !ids.contains(id.as_str())) {
        return Err(not_verified(format!("event {missing} is not in the file")));
    }
    Ok(())
}

/// Drops the day's partition if it still holds exactly `rows` rows, deleting the `sagas` rows whose events
/// were all in it.
async fn drop_partition(pool: &PgPool, day: NaiveDate, rows: usize) -> Result<(), OpsError> {
    let name = partition_name(day);
    let (start, end) = bounds(day);
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("LOCK TABLE \"{name}\" IN SHARE MODE"))
        .execute(&mut *tx)
        .await?;
    let now: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{name}\""))
        .fetch_one(&mut *tx)
        .await?;
    if usize::try_from(now).ok() != Some(rows) {
        return Err(OpsError::ExportNotVerified {
            day: day.to_string(),
            reason: format!("{now} rows now, {rows} exported: events arrived meanwhile; run again"),
        });
    }
    sqlx::query(&format!(
        "DELETE FROM sagas s WHERE s.saga_id IN (SELECT DISTINCT saga_id FROM \"{name}\")
         AND NOT EXISTS (SELECT 1 FROM saga_events e WHERE e.saga_id = s.saga_id
             AND (e.recorded_at < $1 OR e.recorded_at >= $2))"
    ))
    .bind(start)
    .bind(end)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!("DROP TABLE \"{name}\""))
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM restored_days WHERE day = $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
