-- Retention (R7): saga_events becomes a table partitioned by the UTC day of recorded_at, one partition per day
-- (`saga_events_pYYYYMMDD`) plus a default partition that catches anything outside them. `archive` exports a
-- day to cold storage and drops its partition; `restore` loads it back (rows marked `restored`).
--
-- Built from the table as the lower-numbered migrations left it (LIKE ..., indexes re-created from their
-- definitions), so columns and indexes added by 0002/0003 carry over. Existing rows are moved.
--
-- A partitioned table's unique key must contain the partition key: the primary key becomes
-- (event_id, recorded_at). recorded_at is part of the event's content, so a re-sent event (same id, same
-- content) still conflicts and is absorbed as a duplicate.

ALTER TABLE saga_events RENAME TO saga_events_unpartitioned;

CREATE TABLE saga_events (
    LIKE saga_events_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED
        INCLUDING STORAGE INCLUDING COMMENTS
) PARTITION BY RANGE (recorded_at);

-- Rows loaded back from cold storage by `restore`.
ALTER TABLE saga_events ADD COLUMN restored BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE sagas ADD COLUMN restored BOOLEAN NOT NULL DEFAULT false;

CREATE TABLE saga_events_default PARTITION OF saga_events DEFAULT;

DO $$
DECLARE
    d DATE;
    idx RECORD;
    defs TEXT[] := '{}';
    def TEXT;
BEGIN
    -- one partition per recent day that has events, and for the week ahead (older or far-future rows go to
    -- the default partition; `archive` splits it)
    FOR d IN
        SELECT DISTINCT (recorded_at AT TIME ZONE 'UTC')::date FROM saga_events_unpartitioned
        WHERE recorded_at >= now() - interval '400 days' AND recorded_at < now() + interval '8 days'
        UNION
        SELECT ((now() AT TIME ZONE 'UTC')::date + g) FROM generate_series(-1, 7) AS g
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF saga_events FOR VALUES FROM (%L) TO (%L)',
            'saga_events_p' || to_char(d, 'YYYYMMDD'),
            to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
    END LOOP;

    -- the indexes of the old table (but its primary key), re-created on the new one after the old is dropped
    FOR idx IN
        SELECT i.indexrelid
        FROM pg_index i
        WHERE i.indrelid = 'saga_events_unpartitioned'::regclass AND NOT i.indisprimary
    LOOP
        defs := defs || pg_get_indexdef(idx.indexrelid);
    END LOOP;

    INSERT INTO saga_events SELECT *, false FROM saga_events_unpartitioned;
    DROP TABLE saga_events_unpartitioned;
    ALTER TABLE saga_events ADD PRIMARY KEY (event_id, recorded_at);

    FOREACH def IN ARRAY defs LOOP
        def := replace(def, ' ON ' || quote_ident(current_schema()) || '.saga_events_unpartitioned ',
            ' ON ' || quote_ident(current_schema()) || '.saga_events ');
        def := replace(def, ' ON saga_events_unpartitioned ', ' ON saga_events ');
        BEGIN
            EXECUTE def;
        EXCEPTION WHEN feature_not_supported OR invalid_table_definition THEN
            -- a unique index without recorded_at cannot exist on a partitioned table: keep it as a plain index
            RAISE NOTICE 'saga_events: % kept as a non-unique index (%)', def, SQLERRM;
            EXECUTE regexp_replace(def, '^CREATE UNIQUE INDEX', 'CREATE INDEX');
        END;
    END LOOP;
END
$$;

-- Days whose partition was loaded back by `restore`; `archive` leaves them online for a while.
CREATE TABLE restored_days (
    day         DATE        PRIMARY KEY,
    restored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    events      BIGINT      NOT NULL
);

-- One row per `reconcile` run (R9); the service's /metrics reports the latest.
CREATE TABLE reconcile_runs (
    id                 BIGSERIAL   PRIMARY KEY,
    day                DATE        NOT NULL,
    ran_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    missing_in_tracker BIGINT      NOT NULL,
    missing_in_outbox  BIGINT      NOT NULL,
    count_mismatches   BIGINT      NOT NULL,
    stuck_sagas        BIGINT      NOT NULL,
    ok                 BOOLEAN     NOT NULL,
    report             JSONB       NOT NULL
);
CREATE INDEX reconcile_runs_ran_at ON reconcile_runs (ran_at DESC);
