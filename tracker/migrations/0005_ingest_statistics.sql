-- Ingest speed (issue 16/20): keep planner statistics and visibility maps current on tables that grow fast.
-- autovacuum's defaults wait until 10 % (analyze) / 20 % (vacuum) of a table changed; the ingest tables grow
-- by millions of rows a day and `sagas` rows are rewritten on every batch that touches them. The service
-- also runs ANALYZE itself during bulk loads (src/db/statistics.rs). Storage parameters cannot be set on a
-- partitioned table, so they are set only where the table is a plain one.
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = 'saga_events'::regclass) = 'r' THEN
        ALTER TABLE saga_events SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000,
                                     autovacuum_vacuum_scale_factor = 0.05);
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = 'sagas'::regclass) = 'r' THEN
        ALTER TABLE sagas SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000,
                               autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
    END IF;
END
$$;
