-- Issue 14 (sync cost): when the account's campaign / ad group / ad lists were last fetched from the platform.
-- The lean call plan reuses the stored lists until they are older than the entity refresh interval (or a report
-- names an ad they do not hold), so an incremental sync costs one report request instead of three lists and
-- three reports.
ALTER TABLE nexcomet.ad_accounts ADD COLUMN IF NOT EXISTS entities_synced_at timestamptz;
