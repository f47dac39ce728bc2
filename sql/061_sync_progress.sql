-- Issue 14 (resumable syncs): how far the running sync_ad_account job of an account got. A retry of the same job
-- (after a snooze, a worker crash, a lost lease) skips the report windows up to committed_through; the row is
-- deleted in the transaction that completes the job. Another job (a different job_id) ignores and replaces it, so
-- a window restated meanwhile is never skipped on a stale record.
CREATE TABLE IF NOT EXISTS nexcomet.sync_progress (
    ad_account_id      bigint PRIMARY KEY REFERENCES nexcomet.ad_accounts (id) ON DELETE CASCADE,
    job_id             bigint NOT NULL,
    window_start       date NOT NULL,
    window_end         date NOT NULL,
    -- Last day of the last committed report window; NULL when only the entity lists are committed.
    committed_through  date,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
