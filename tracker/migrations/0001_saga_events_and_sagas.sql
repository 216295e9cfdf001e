-- saga-tracker-service schema v1. Migrations are versioned here and embedded in the binary; they run at start.

-- Append-only: one row per event, ever. The primary key absorbs duplicates (producer retries, spool replays,
-- outbox re-sends, offset rewinds).
CREATE TABLE saga_events (
    event_id         UUID PRIMARY KEY,
    idempotency_key  TEXT        NOT NULL,
    saga_id          TEXT        NOT NULL,
    saga_type        TEXT        NOT NULL,
    step             TEXT        NOT NULL,
    status           TEXT        NOT NULL,
    attempt          INTEGER     NOT NULL,
    order_id         TEXT,
    service          TEXT        NOT NULL,
    recorded_at      TIMESTAMPTZ NOT NULL,
    duration_micros  BIGINT,
    error_kind       TEXT,
    error_message    TEXT,
    metadata         JSONB       NOT NULL DEFAULT '{}'::jsonb,
    kafka_topic      TEXT        NOT NULL,
    kafka_partition  INTEGER     NOT NULL,
    kafka_offset     BIGINT      NOT NULL,
    ingested_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX saga_events_saga_id_recorded_at ON saga_events (saga_id, recorded_at);
CREATE INDEX saga_events_recorded_at ON saga_events (recorded_at);

-- Derived: recomputed from saga_events for every saga a batch touches, in the batch's transaction.
CREATE TABLE sagas (
    saga_id                TEXT        PRIMARY KEY,
    saga_type              TEXT        NOT NULL,
    status                 TEXT        NOT NULL,
    order_id               TEXT,
    started_at             TIMESTAMPTZ NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL,
    failed_step            TEXT,
    pending_compensations  TEXT[]      NOT NULL DEFAULT '{}',
    steps                  TEXT[]      NOT NULL DEFAULT '{}',
    services               TEXT[]      NOT NULL DEFAULT '{}',
    event_count            INTEGER     NOT NULL,
    last_ingested_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX sagas_started_at_saga_id ON sagas (started_at DESC, saga_id DESC);
CREATE INDEX sagas_status_updated_at ON sagas (status, updated_at);
CREATE INDEX sagas_saga_type ON sagas (saga_type);
CREATE INDEX sagas_steps ON sagas USING GIN (steps);
CREATE INDEX sagas_services ON sagas USING GIN (services);
