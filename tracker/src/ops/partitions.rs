//! Day partitions of `saga_events` (see migration 0004): create ahead, split the default partition, drop.
//!
//! A day partition is created as a plain table, the day's rows are moved out of the default partition into
//! it, and it is attached — all in one transaction under an advisory lock, so two runs (or a run and a
//! service start) never race and no row is ever outside a partition.

use chrono::{Days, NaiveDate, Utc};
use sqlx::PgPool;

use super::day::{bounds, partition_day, partition_name};

/// The advisory lock key of partition maintenance.
const LOCK: &str = "saga_events partitions";

/// The day partitions that exist, oldest first.
pub async fn day_partitions(pool: &PgPool) -> Result<Vec<NaiveDate>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'saga_events'::regclass",
    )
    .fetch_all(pool)
    .await?;
    let mut days: Vec<NaiveDate> = names.iter().filter_map(|n| partition_day(n)).collect();
    days.sort();
    Ok(days)
}

/// Days that have rows in the default partition before `before`, oldest first.
pub async fn default_days_before(
    pool: &PgPool,
    before: NaiveDate,
) -> Result<Vec<NaiveDate>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT (recorded_at AT TIME ZONE 'UTC')::date AS d FROM saga_events_default
         WHERE recorded_at < $1 ORDER BY d",
    )
    .bind(bounds(before).0)
    .fetch_all(pool)
    .await
}

/// Makes sure the partition of `day` exists, moving the day's rows out of the default partition. True when
/// it was created.
pub async fn ensure(pool: &PgPool, day: NaiveDate) -> Result<bool, sqlx::Error> {
    let name = partition_name(day);
    let (start, end) = bounds(day);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(LOCK)
        .execute(&mut *tx)
        .await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        tx.commit().await?;
        return Ok(false);
    }
    sqlx::query(&format!(
        "CREATE TABLE \"{name}\" (LIKE saga_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
         INCLUDING GENERATED INCLUDING STORAGE)"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "WITH moved AS (DELETE FROM saga_events_default WHERE recorded_at >= $1 AND recorded_at < $2 \
         RETURNING *) INSERT INTO \"{name}\" SELECT * FROM moved"
    ))
    .bind(start)
    .bind(end)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "ALTER TABLE saga_events ATTACH PARTITION \"{name}\" FOR VALUES FROM ('{}') TO ('{}')",
        start.to_rfc3339(),
        end.to_rfc3339()
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Creates the partitions from yesterday to `ahead` days after today (UTC). Returns how many were created.
pub async fn ensure_ahead(pool: &PgPool, ahead: u32) -> Result<usize, sqlx::Error> {
    let today = Utc::now().date_naive();
    let mut created = 0;
    let from = today.checked_sub_days(Days::new(1)).unwrap_or(today);
    let to = today
        .checked_add_days(Days::new(u64::from(ahead)))
        .unwrap_or(today);
    for day in super::day::days(from, to) {
        if ensure(pool, day).await? {
            created += 1;
        }
    }
    Ok(created)
}
