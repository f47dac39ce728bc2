-- Privacy request lifecycle (issue 12; policy sections 8 and 9: requests are answered within 30 days).
-- Idempotent: safe to apply again.

-- The legal deadline, set by the database: requested_at + 30 days, whatever a writer puts there.
ALTER TABLE nexcomet.privacy_requests ADD COLUMN IF NOT EXISTS due_at timestamptz;
CREATE OR REPLACE FUNCTION nexcomet.privacy_requests_set_due_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.due_at := NEW.requested_at + interval '30 days';
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS privacy_requests_due_at ON nexcomet.privacy_requests;
CREATE TRIGGER privacy_requests_due_at BEFORE INSERT OR UPDATE OF requested_at, due_at
    ON nexcomet.privacy_requests FOR EACH ROW EXECUTE FUNCTION nexcomet.privacy_requests_set_due_at();
UPDATE nexcomet.privacy_requests SET due_at = requested_at + interval '30 days' WHERE due_at IS NULL;
ALTER TABLE nexcomet.privacy_requests ALTER COLUMN due_at SET NOT NULL;
CREATE INDEX IF NOT EXISTS privacy_requests_open_idx ON nexcomet.privacy_requests (due_at)
    WHERE status IN ('pending', 'running', 'failed');

-- The rights of section 8 that jobs act on. `object` (right to object) stops analytics processing as `restrict`
-- does; `lift_restriction` ends either.
ALTER TABLE nexcomet.privacy_requests DROP CONSTRAINT IF EXISTS privacy_requests_kind_check;
ALTER TABLE nexcomet.privacy_requests ADD CONSTRAINT privacy_requests_kind_check
    CHECK (kind IN ('export', 'erase', 'restrict', 'lift_restriction', 'object'));

-- Why processing is restricted: the request kind that set `processing_restricted` (NULL when not restricted).
ALTER TABLE nexcomet.organizations ADD COLUMN IF NOT EXISTS processing_restricted_by text
    CHECK (processing_restricted_by IN ('restrict', 'object'));

ALTER TABLE nexcomet.privacy_audit DROP CONSTRAINT IF EXISTS privacy_audit_action_check;
ALTER TABLE nexcomet.privacy_audit ADD CONSTRAINT privacy_audit_action_check
    CHECK (action IN ('retention_purge', 'disconnect', 'export', 'erase', 'restrict', 'lift_restriction', 'object',
                      'request_status', 'token_wipe', 'revoke'));

-- Every state change of a request is audited, whoever writes it (jobs, scheduler, operator CLI, the app):
-- kind, old and new status, no personal data.
CREATE OR REPLACE FUNCTION nexcomet.privacy_requests_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO nexcomet.privacy_audit (action, request_id, organization_id, details)
        VALUES ('request_status', NEW.id, NEW.organization_id,
                jsonb_build_object('kind', NEW.kind, 'to', NEW.status, 'user_level', NEW.user_id IS NOT NULL,
                                   'from', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END));
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS privacy_requests_audit ON nexcomet.privacy_requests;
CREATE TRIGGER privacy_requests_audit AFTER INSERT OR UPDATE OF status ON nexcomet.privacy_requests
    FOR EACH ROW EXECUTE FUNCTION nexcomet.privacy_requests_audit();

-- Tokens (sections 2.2, 7, 9). A dead grant keeps no ciphertext: when a connection becomes `needs_reauth` its
-- sealed tokens are deleted in the same statement, whichever code path sets the status.
CREATE OR REPLACE FUNCTION nexcomet.ad_connections_forget_dead_grant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'needs_reauth' THEN
        NEW.access_token_ciphertext := NULL;
        NEW.refresh_token_ciphertext := NULL;
        NEW.token_key_id := NULL;
        NEW.access_token_expires_at := NULL;
        NEW.refresh_token_expires_at := NULL;
        NEW.refresh_enqueued_at := NULL;
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS ad_connections_forget_dead_grant ON nexcomet.ad_connections;
CREATE TRIGGER ad_connections_forget_dead_grant BEFORE INSERT OR UPDATE ON nexcomet.ad_connections
    FOR EACH ROW WHEN (NEW.status = 'needs_reauth' AND (NEW.access_token_ciphertext IS NOT NULL
                                                        OR NEW.refresh_token_ciphertext IS NOT NULL))
    EXECUTE FUNCTION nexcomet.ad_connections_forget_dead_grant();

-- Wipes the tokens of soft-deleted organizations (up to batch_size connections) and stops their scheduling; one
-- audit row per organization. Called by the scheduler's privacy source on every tick (Sources/Runtime/DueWork.swift),
-- so tokens are gone within one tick of the deletion, whatever wrote deleted_at. Returns the connections wiped.
CREATE OR REPLACE FUNCTION nexcomet.wipe_tokens_of_deleted_organizations(batch_size integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    n integer;
BEGIN
    WITH d AS (
        SELECT c.id, c.organization_id
          FROM nexcomet.ad_connections c
          JOIN nexcomet.organizations o ON o.id = c.organization_id
         WHERE o.deleted_at IS NOT NULL
           AND (c.access_token_ciphertext IS NOT NULL OR c.refresh_token_ciphertext IS NOT NULL
                OR c.status <> 'disconnected')
         ORDER BY c.id
         LIMIT batch_size
           FOR UPDATE OF c SKIP LOCKED
    ), w AS (
        UPDATE nexcomet.ad_connections c
           SET status = 'disconnected', access_token_ciphertext = NULL, refresh_token_ciphertext = NULL,
               token_key_id = NULL, access_token_expires_at = NULL, refresh_token_expires_at = NULL,
               next_sync_at = NULL, refresh_enqueued_at = NULL, updated_at = now()
          FROM d WHERE c.id = d.id
        RETURNING c.id, c.organization_id
    ), a AS (
        INSERT INTO nexcomet.privacy_audit (action, organization_id, details)
        SELECT 'token_wipe', organization_id, jsonb_build_object('connections', count(*), 'reason', 'organization deleted')
          FROM w GROUP BY organization_id
    )
    SELECT count(*) FROM w INTO n;
    RETURN n;
END
$$;
