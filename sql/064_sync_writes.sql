-- Issue 14 commits an account's sync per window (entities, then each report window), so the metrics of one sync are
-- written by several transactions, some of them possibly by an earlier attempt of the same job. Each window commit
-- records itself here in its own transaction: the row's xmin is the writing transaction, so every metric row's
-- version can be traced to the window commit that wrote it (the chaos soak proves no row is written twice with
-- it), and operators can see how a sync progressed. Kept 12 months like sync_runs (retention_purge).
CREATE TABLE IF NOT EXISTS nexcomet.sync_writes (
    id             bigserial PRIMARY KEY,
    ad_account_id  bigint NOT NULL REFERENCES nexcomet.ad_accounts (id) ON DELETE CASCADE,
    job_id         bigint NOT NULL,
    window_start   date NOT NULL,
    window_end     date NOT NULL,
    rows_upserted  integer NOT NULL CHECK (rows_upserted >= 0),
    rows_deleted   integer NOT NULL CHECK (rows_deleted >= 0),
    written_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sync_writes_account_idx ON nexcomet.sync_writes (ad_account_id, id);
CREATE INDEX IF NOT EXISTS sync_writes_written_at_idx ON nexcomet.sync_writes (written_at);
