//! The outbox's SQL: migrations (`runtime/migrations/outbox/`, embedded) and partition maintenance.

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// The outbox migrations (versions `2026120100000N`), for [`migrate`] or to combine with a service's own:
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
/// // One migrator for the service's tables and the outbox, one `_sqlx_migrations` history.
/// let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new("./migrations")).await?;
/// let mut all: Vec<_> = migrator.iter().cloned().collect();
/// all.extend(saga_tracker::outbox::MIGRATOR.iter().cloned());
/// all.sort_by_key(|m| m.version);
/// migrator.migrations = all.into();
/// migrator.run(&pool).await?;
/// # Ok(()) }
/// ```
pub static MIGRATOR: Migrator = sqlx::migrate!("migrations/outbox");

/// Runs the outbox migrations in the pool's current schema. Migrations the service applied with its own migrator
/// (in the same `_sqlx_migrations` table) are ignored, so both can run; give the service's migrator
/// `set_ignore_missing(true)` likewise, or combine both sets into one migrator (see [`MIGRATOR`]).
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut migrator = Migrator {
        migrations: MIGRATOR.migrations.clone(),
        ..Migrator::DEFAULT
    };
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

/// Creates the missing daily partitions (UTC days) from yesterday to `days_ahead` days ahead; returns how many
/// it created. The relay calls it at start and then every maintenance interval; an insert whose day has no
/// partition fails (the business transaction with it), so keep a relay, or a scheduled call, running.
pub async fn ensure_partitions(pool: &PgPool, days_ahead: u32) -> Result<u32, sqlx::Error> {
    let days = i32::try_from(days_ahead).unwrap_or(i32::MAX);
    let created: i32 = sqlx::query_scalar("SELECT saga_tracker_outbox_ensure_partitions($1)")
        .bind(days)
        .fetch_one(pool)
        .await?;
    Ok(u32::try_from(created).unwrap_or(0))
}

/// Retention: drops the daily partitions whose day ended more than `keep_days` days ago and whose rows are all
/// published; returns their names. A partition still holding unpublished rows (pending, or given up after a
/// permanent failure) is kept and reported by a PostgreSQL `WARNING`.
pub async fn drop_published_partitions(
    pool: &PgPool,
    keep_days: u32,
) -> Result<Vec<String>, sqlx::Error> {
    let days = i32::try_from(keep_days).unwrap_or(i32::MAX);
    sqlx::query_scalar("SELECT saga_tracker_outbox_drop_published($1)")
        .bind(days)
        .fetch_all(pool)
        .await
}
