-- Issue 14 (reconciliation): after each account sync the platform's account totals over the synced window are
-- compared with the stored ad-level sums. reconcile_status: ok | resynced (a difference went away after one
-- re-sync of the window) | mismatch (it persisted; reconcile_difference holds both sides) | skipped (the totals
-- request failed; the sync itself succeeded). NULL: reconciliation off, or a run from before this migration.
ALTER TABLE nexcomet.sync_runs ADD COLUMN IF NOT EXISTS reconcile_status text
    CHECK (reconcile_status IN ('ok', 'resynced', 'mismatch', 'skipped'));
ALTER TABLE nexcomet.sync_runs ADD COLUMN IF NOT EXISTS reconcile_difference jsonb;

-- A monotonic count per platform for the Prometheus counter nexjobs_sync_reconcile_mismatch_total (sync_runs rows
-- are purged by retention, a counter must never go down).
CREATE TABLE IF NOT EXISTS nexcomet.sync_reconcile_counters (
    platform    text PRIMARY KEY CHECK (platform IN ('tiktok', 'snapchat')),
    mismatches  bigint NOT NULL DEFAULT 0
);
