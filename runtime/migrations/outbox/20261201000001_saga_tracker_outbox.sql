-- saga-tracker transactional outbox (runtime feature `outbox`).
-- Services write one row per saga event in the same transaction as their business change; the relay
-- (`saga-tracker outbox relay`, or saga_tracker::outbox::Relay) publishes unpublished rows to Kafka and sets
-- published_at once the broker acknowledged them. Partitioned by day: retention drops whole partitions.
--
-- Contract (read by operators' reconciliation; keep names): event_id, created_at, saga_id, payload, headers,
-- published_at. Added by the relay for its own bookkeeping: attempts, last_error, failed_at.

CREATE TABLE IF NOT EXISTS saga_tracker_outbox (
    event_id     UUID        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    saga_id      TEXT        NOT NULL,           -- the Kafka key
    payload      BYTEA       NOT NULL,           -- the framed Avro message, exactly what KafkaSink sends
    headers      JSONB       NOT NULL DEFAULT '{}', -- Kafka headers, e.g. {"traceparent": "00-…"}
    published_at TIMESTAMPTZ,                    -- set when the broker acknowledged the message
    attempts     INTEGER     NOT NULL DEFAULT 0, -- failed publish attempts
    last_error   TEXT,                           -- the last failure's reason
    failed_at    TIMESTAMPTZ,                    -- set on a permanent failure: the relay stops retrying the row
    PRIMARY KEY (event_id, created_at)
) PARTITION BY RANGE (created_at);

-- What the relay claims: unpublished, not given up, oldest first.
CREATE INDEX IF NOT EXISTS saga_tracker_outbox_pending
    ON saga_tracker_outbox (created_at)
    WHERE published_at IS NULL AND failed_at IS NULL;

-- Wakes relays (LISTEN saga_tracker_outbox) when a transaction that inserted rows commits. PostgreSQL folds the
-- identical notifications of one transaction into one.
CREATE OR REPLACE FUNCTION saga_tracker_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('saga_tracker_outbox', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS saga_tracker_outbox_notify ON saga_tracker_outbox;
CREATE TRIGGER saga_tracker_outbox_notify
    AFTER INSERT ON saga_tracker_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION saga_tracker_outbox_notify();

-- Creates the daily partitions (UTC days) from yesterday to `days_ahead` days ahead that do not exist yet, in
-- the current schema. Returns how many it created. Serialised by an advisory lock (several relays call it).
CREATE OR REPLACE FUNCTION saga_tracker_outbox_ensure_partitions(days_ahead integer DEFAULT 7) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    today   date := (now() AT TIME ZONE 'UTC')::date;
    day     date;
    name    text;
    created integer := 0;
BEGIN
    IF days_ahead < 0 THEN
        RAISE EXCEPTION 'saga_tracker_outbox_ensure_partitions: days_ahead must be >= 0, got %', days_ahead;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.saga_tracker_outbox maintenance'));
    FOR day IN SELECT generate_series(today - 1, today + days_ahead, interval '1 day')::date LOOP
        name := 'saga_tracker_outbox_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(format('%I.%I', current_schema(), name)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I.%I PARTITION OF %I.saga_tracker_outbox FOR VALUES FROM (%L) TO (%L)',
                current_schema(), name, current_schema(),
                day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$$;

-- Retention: drops the daily partitions (in the current schema) whose day ended more than `keep_days` days ago
-- and that hold no row still waiting (unpublished, whether pending or given up). Returns the dropped names;
-- a partition kept back for waiting rows is reported with a WARNING.
CREATE OR REPLACE FUNCTION saga_tracker_outbox_drop_published(keep_days integer DEFAULT 7)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    cutoff  date := (now() AT TIME ZONE 'UTC')::date - keep_days;
    part    record;
    waiting bigint;
BEGIN
    IF keep_days < 1 THEN
        RAISE EXCEPTION 'saga_tracker_outbox_drop_published: keep_days must be >= 1, got %', keep_days;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '.saga_tracker_outbox maintenance'));
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.inhparent = format('%I.saga_tracker_outbox', current_schema())::regclass
          AND c.relname ~ '^saga_tracker_outbox_p[0-9]{8}$'
          AND to_date(substr(c.relname, 22), 'YYYYMMDD') < cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I WHERE published_at IS NULL', current_schema(), part.relname)
            INTO waiting;
        IF waiting = 0 THEN
            EXECUTE format('DROP TABLE %I.%I', current_schema(), part.relname);
            RETURN NEXT part.relname;
        ELSE
            RAISE WARNING 'saga_tracker_outbox: partition % kept past retention: % rows not published', part.relname, waiting;
        END IF;
    END LOOP;
END
$$;

SELECT saga_tracker_outbox_ensure_partitions(7);
