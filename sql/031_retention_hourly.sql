-- Retention (issue 12, policy section 7): data may not outlive its window by more than an hour, so the purge runs
-- hourly (at minute 17) instead of daily at 03:00. Only a schedule still as seeded (daily at 03:00 UTC) changes: an
-- operator's own cadence is kept. Idempotent.
UPDATE nexjobs.schedules SET cron = '17 * * * *'
 WHERE name = 'retention_purge' AND kind = 'retention_purge' AND cron = '0 3 * * *' AND timezone = 'UTC';

-- The purge finds finished requests, old audit rows and unsent notifications by time.
CREATE INDEX IF NOT EXISTS privacy_requests_completed_idx ON nexcomet.privacy_requests (completed_at)
    WHERE status = 'completed';
