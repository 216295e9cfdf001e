-- Dead letters the DLQ topic refused for good (issue 17): a message that could not be stored is produced to
-- saga.tracker.dlq; when that produce fails permanently (the record is too large for the DLQ topic, the topic is
-- not authorized, the record is invalid, the topic does not exist) the message is kept here instead, unchanged,
-- so that ingestion goes on and nothing is lost. `dlq redrive` retries these rows (store, or produce to the DLQ
-- topic) and deletes each one it could place.
CREATE TABLE saga_dlq_local (
    id               BIGSERIAL   PRIMARY KEY,
    -- where the message was read
    source_topic     TEXT        NOT NULL,
    source_partition INTEGER     NOT NULL,
    source_offset    BIGINT      NOT NULL,
    -- why it was dead-lettered (the dlq.reason code and the dlq.error text)
    reason           TEXT        NOT NULL,
    error            TEXT        NOT NULL,
    -- why the DLQ topic refused it: too_large, not_authorized, invalid_record, unknown_topic; and librdkafka's text
    cause            TEXT        NOT NULL,
    produce_error    TEXT        NOT NULL,
    -- the original record: key, value, headers (names and values as bytes; a NULL value is a header without one)
    message_key      BYTEA,
    payload          BYTEA,
    header_keys      BYTEA[]     NOT NULL DEFAULT '{}',
    header_values    BYTEA[]     NOT NULL DEFAULT '{}',
    dead_lettered_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- a batch read again after a crash keeps one row per message
    UNIQUE (source_topic, source_partition, source_offset)
);
