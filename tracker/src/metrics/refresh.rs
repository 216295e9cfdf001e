//! The database-backed gauges (`saga_tracker_sagas`, `saga_tracker_stuck_sagas`, `saga_tracker_database_up`),
//! refreshed by a background task every `--metrics-refresh-ms`, so a scrape costs no database query.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{DbSnapshot, Metrics};
use crate::db::Store;

/// Reads the saga counts once.
pub async fn snapshot(store: &Store, stuck_after: Duration) -> Result<DbSnapshot, sqlx::Error> {
    Ok(DbSnapshot {
        sagas_by_state: store.sagas_by_state().await?,
        stuck: store.stuck_sagas(stuck_after).await?,
        reconcile: crate::ops::reconcile::last_run(store.pool()).await?,
    })
}

/// Refreshes the gauges now and then every `every`, until `stop` turns true.
pub async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    stuck_after: Duration,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match snapshot(&store, stuck_after).await {
            Ok(db) => metrics.set_database(Some(&db)),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: database refresh failed");
                metrics.set_database(None);
            }
        }
    }
}
