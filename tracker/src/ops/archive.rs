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

use futures::TryStreamExt;
use uuid::Uuid;

use super::cold::{self, ArchivedEvent, ColdStore, ContainerWriter};
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
    let path = format!("{}/{}", cold.url.trim_end_matches('/'), cold.day_path(day));
    let not_verified = |reason: String| OpsError::ExportNotVerified {
        day: day.to_string(),
        reason,
    };
    let partition_ids: HashSet<Uuid> =
        sqlx::query_scalar(&format!("SELECT event_id FROM \"{name}\""))
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();

    // an archive of the day already there (late events, a restored day): its events are kept
    let existing = cold.get_day(day).await?;
    let existing_ids: Vec<Uuid> = match &existing {
        Some(bytes) => cold::check_container(bytes).map_err(|reason| OpsError::BadArchive {
            path: path.clone(),
            reason,
        })?,
        None => Vec::new(),
    };
    let kept = existing_ids
        .iter()
        .filter(|id| !partition_ids.contains(id))
        .count();
    let expected = kept + partition_ids.len();
    let covered = existing_ids.len() == expected;
    if !partition_ids.is_empty() && !covered {
        let mut file = ContainerWriter::new(day, expected).map_err(not_verified)?;
        if let Some(bytes) = &existing {
            for event in cold::records(bytes).map_err(not_verified)? {
                let event = event.map_err(not_verified)?;
                let id =
                    Uuid::parse_str(&event.event_id).map_err(|e| not_verified(e.to_string()))?;
                if !partition_ids.contains(&id) {
                    file.append(&event).map_err(not_verified)?;
                }
            }
        }
        let select = format!("SELECT to_jsonb(e) FROM \"{name}\" e ORDER BY recorded_at, event_id");
        let mut rows = sqlx::query_scalar::<_, Value>(&select).fetch(pool);
        while let Some(row) = rows.try_next().await? {
            let event = ArchivedEvent::from_row_json(row).map_err(not_verified)?;
            file.append(&event).map_err(not_verified)?;
        }
        drop(rows);
        cold.put_day(day, file.finish().map_err(not_verified)?)
            .await?;
    }
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
    partition_ids: &HashSet<Uuid>,
) -> Result<(), OpsError> {
    let not_verified = |reason: String| OpsError::ExportNotVerified {
        day: day.to_string(),
        reason,
    };
    let Some(bytes) = cold.get_day(day).await? else {
        return Err(not_verified("the file is not there after writing".into()));
    };
    let ids = cold::check_container(&bytes).map_err(not_verified)?;
    if ids.len() != expected {
        return Err(not_verified(format!(
            "{} events read back, {expected} written",
            ids.len()
        )));
    }
    let ids: HashSet<Uuid> = ids.into_iter().collect();
    if ids.len() != expected {
        return Err(not_verified("duplicate event ids in the file".into()));
    }
    if let Some(missing) = partition_ids.iter().find(|id| !ids.contains(id)) {
        return Err(not_verified(format!("event {missing} is not in the file")));
    }
    Ok(())
}

/// Drops the day's partition if it still holds exactly `rows` rows, deleting the `sagas` rows (and their
/// summaries) whose events were all in it.
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
        "WITH gone AS (
             DELETE FROM sagas s WHERE s.saga_id IN (SELECT DISTINCT saga_id FROM \"{name}\")
             AND NOT EXISTS (SELECT 1 FROM saga_events e WHERE e.saga_id = s.saga_id
                 AND (e.recorded_at < $1 OR e.recorded_at >= $2))
             RETURNING s.saga_id
         )
         DELETE FROM saga_summaries m USING gone WHERE m.saga_id = gone.saga_id"
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
