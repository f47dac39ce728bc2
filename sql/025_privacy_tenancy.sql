-- Privacy review fixes (idempotent; a separate file because 023 had already been applied somewhere):

-- A user-level privacy request stays user-level after the user row is gone (with ON DELETE SET NULL, a NULL
-- user_id would turn it into a request about the whole organization). The jobs check that the user belongs to
-- the request's organization.
ALTER TABLE nexcomet.privacy_requests DROP CONSTRAINT IF EXISTS privacy_requests_user_id_fkey;

-- An ad account belongs to one connection, so to one organization: the same advertiser connected by two
-- organizations (or reconnected) is a new account, and one tenant's data never moves to another. The sync's upsert
-- keys on (connection_id, external_id), unique since 020; the global unique index goes.
DROP INDEX IF EXISTS nexcomet.ad_accounts_platform_external_idx;
CREATE INDEX IF NOT EXISTS ad_accounts_platform_external_lookup_idx ON nexcomet.ad_accounts (platform, external_id);

-- retention_purge deletes sent notifications by age.
CREATE INDEX IF NOT EXISTS notifications_sent_idx ON nexcomet.notifications (sent_at) WHERE sent_at IS NOT NULL;
