-- Ingest speed (issue 16): every summary a batch inserts (one per new saga) ran the foreign key's check against
-- `sagas` (a lookup and a row lock on the row the same statement had just written): about 40 % of the
-- summary insert. The service never reads a summary without its `sagas` row (it loads `sagas` LEFT JOIN
-- `saga_summaries`; a row without a valid summary is rebuilt from its events), and `archive` now deletes the
-- summaries with the `sagas` rows it deletes, which the key's ON DELETE CASCADE did. A summary left behind by
-- a hand-made delete is never read, and overwritten if its saga comes back.
ALTER TABLE saga_summaries DROP CONSTRAINT IF EXISTS saga_summaries_saga_id_fkey;
