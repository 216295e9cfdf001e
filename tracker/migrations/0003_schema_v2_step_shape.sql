-- Schema v2 (schemas/history/SagaTracker.v2.avsc): the step's place in its saga and the compensation's cause.
-- NULL for events written with v1. The derived state uses them to tell COMPLETED from "between two steps" and
-- which succeeded steps still owe a compensation.
ALTER TABLE saga_events
    ADD COLUMN step_index            INTEGER,
    ADD COLUMN step_count            INTEGER,
    ADD COLUMN compensable           BOOLEAN,
    ADD COLUMN cause_idempotency_key TEXT;
