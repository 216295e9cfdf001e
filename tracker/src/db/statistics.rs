//! Keeps the planner's statistics in step with a table that grows quickly.
//!
//! The ingest statements are planned from `pg_class` statistics. Autovacuum refreshes them only after 10 % of a
//! table changed *and* its next round (`autovacuum_naptime`, 1 min by default), so during the first minutes of a
//! bulk load — a fresh database, a backlog after an outage — the planner believes `saga_events` is empty and may
//! pick a sequential scan to reload the sagas a batch touches; that scan then reads the whole table once per
//! batch (the bimodal ingest rate of issue 20). [`Analyzer`] runs `ANALYZE` itself whenever the rows this process
//! stored reach what the table held at the last analysis (at least 1,000), i.e. when the table doubled, on a
//! connection of its own and never two at a time, so a load of N events costs about log₂(N/1000) analyses.
//! Each samples 3,000 rows (`default_statistics_target` 10 for its transaction) instead of 30,000: enough to tell an index lookup from a
//! scan, and a tenth of the cost (at the default, the analyses took 29 % of PostgreSQL's statement time while the
//! ingest bench loaded 200,000 events). Autovacuum's own analyses of the partitions use the full target. Migration 0005 lowers the
//! autovacuum thresholds of both tables for the steady state, and the connections plan every statement for its
//! actual parameters (`plan_cache_mode = force_custom_plan`), so no generic plan outlives the table's growth.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sqlx::PgPool;

/// The statistics target of the service's own analyses: a sample of 300 × 10 rows, enough for the plan shapes
/// the ingest statements depend on (row counts, the distinct saga ids), a tenth of the default's cost.
const STATISTICS_TARGET: u32 = 10;

/// Fewest stored rows that trigger an analysis.
const MIN_GROWTH: u64 = 1_000;

/// Runs `ANALYZE` on the ingest tables as they grow (see the module documentation).
#[derive(Debug)]
pub struct Analyzer {
    pool: PgPool,
    stored: AtomicU64,
    next: AtomicU64,
    running: Arc<AtomicBool>,
    analyses: Arc<AtomicU64>,
}

impl Analyzer {
    /// Reads the current size estimate of `saga_events` (the first analysis comes when this process has
    /// stored half as many rows again, or 1,000 on an empty table).
    pub async fn new(pool: PgPool) -> Result<Analyzer, sqlx::Error> {
        let rows: f32 = sqlx::query_scalar(
            "SELECT greatest(reltuples, 0)::float4 FROM pg_class WHERE oid = 'saga_events'::regclass",
        )
        .fetch_one(&pool)
        .await?;
        Ok(Analyzer {
            pool,
            stored: AtomicU64::new(0),
            next: AtomicU64::new(growth(rows as u64)),
            running: Arc::new(AtomicBool::new(false)),
            analyses: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Counts `n` newly stored events; starts an analysis in the background when the table grew enough.
    pub fn stored(&self, n: usize) {
        let total = self.stored.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total < self.next.load(Ordering::Relaxed) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.next.store(total + growth(total), Ordering::Relaxed);
        let pool = self.pool.clone();
        let running = Arc::clone(&self.running);
        let analyses = Arc::clone(&self.analyses);
        tokio::spawn(async move {
            match analyze(&pool).await {
                Ok(_) => {
                    analyses.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "ANALYZE of the ingest tables failed"),
            }
            running.store(false, Ordering::Release);
        });
    }

    /// Analyses run (and finished) by this process.
    pub fn analyses(&self) -> u64 {
        self.analyses.load(Ordering::Relaxed)
    }
}

/// `ANALYZE saga_events, sagas` with a sample of [`STATISTICS_TARGET`] (`SET LOCAL`: the connection keeps its
/// setting).
async fn analyze(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "SET LOCAL default_statistics_target = {STATISTICS_TARGET}"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("ANALYZE saga_events, sagas")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// How many more stored rows trigger the next analysis when the table holds about `rows`: as many again. (Half
/// as many again, as before issue 16's second part, ran 12 analyses during a load of 200,000 events: 12 % of
/// PostgreSQL's statement time in the ingest bench.)
fn growth(rows: u64) -> u64 {
    rows.max(MIN_GROWTH)
}

#[cfg(test)]
mod tests {
    use super::growth;

    #[test]
    fn analyses_grow_geometrically() {
        assert_eq!(growth(0), 1_000);
        assert_eq!(growth(10_000), 10_000);
        // a load of 200,000 rows into an empty table: eight analyses (1,000, 2,000, ... 128,000)
        let (mut total, mut next, mut n) = (0u64, growth(0), 0);
        while total < 200_000 {
            total += 500;
            if total >= next {
                next = total + growth(total);
                n += 1;
            }
        }
        assert!((7..=9).contains(&n), "{n}");
    }
}
