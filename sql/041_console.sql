-- Operator console (nexjobs serve): sessions, the operator audit log, and what the console's pages read.
-- Idempotent: IF NOT EXISTS / CREATE OR REPLACE only.

-- Console sessions. Only a SHA-256 hash of the session id is stored (a database read does not yield a usable
-- cookie); `operator` is a short prefix of the SHA-256 of the token used to log in (never the token itself).
-- Expiry is enforced by the server (expires_at); expired rows are deleted at the next login.
CREATE TABLE IF NOT EXISTS nexjobs.console_sessions (
    id_hash     bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    operator    text NOT NULL CHECK (length(operator) BETWEEN 1 AND 64),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expires_idx ON nexjobs.console_sessions (expires_at);

-- One row per operator action taken in the console (retry, cancel, discard, run_now, schedule_enable,
-- schedule_disable, login, logout). `job_ids` lists the jobs acted on; `filter` holds the bulk filter used.
CREATE TABLE IF NOT EXISTS nexjobs.operator_audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    operator  text NOT NULL,
    action    text NOT NULL CHECK (action ~ '^[a-z_]{1,40}$'),
    job_ids   bigint[] NOT NULL DEFAULT '{}',
    filter    jsonb,
    target    text,
    count     integer NOT NULL DEFAULT 0 CHECK (count >= 0)
);
CREATE INDEX IF NOT EXISTS operator_audit_at_idx ON nexjobs.operator_audit (at);

-- Snoozes: a handler's snooze hands the job back as 'available' with its attempt uncharged and a later run_at.
-- The count is kept by a trigger whose WHEN clause is evaluated without calling a function for every other update
-- (a shutdown hand-back also uncharges, but with run_at = now(), so it is not counted).
ALTER TABLE nexjobs.jobs ADD COLUMN IF NOT EXISTS snoozes integer NOT NULL DEFAULT 0;
CREATE OR REPLACE FUNCTION nexjobs.jobs_count_snooze() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.snoozes := OLD.snoozes + 1;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS jobs_count_snooze ON nexjobs.jobs;
CREATE TRIGGER jobs_count_snooze BEFORE UPDATE ON nexjobs.jobs
    FOR EACH ROW WHEN (OLD.state = 'running' AND NEW.state = 'available' AND NEW.attempt < OLD.attempt
                       AND NEW.run_at > now())
    EXECUTE FUNCTION nexjobs.jobs_count_snooze();

-- Keyset pagination of the console's job list (newest first) by state and by kind: an index scan at any size.
-- (Without a state or kind filter the primary key is walked backwards.)
CREATE INDEX IF NOT EXISTS jobs_state_id_idx ON nexjobs.jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_kind_id_idx ON nexjobs.jobs (kind, id);

-- When a connection was marked needs_reauth (the console lists them with this time).
ALTER TABLE nexcomet.ad_connections ADD COLUMN IF NOT EXISTS needs_reauth_at timestamptz;
UPDATE nexcomet.ad_connections SET needs_reauth_at = updated_at
 WHERE status = 'needs_reauth' AND needs_reauth_at IS NULL;
CREATE OR REPLACE FUNCTION nexcomet.ad_connections_mark_reauth() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.needs_reauth_at := CASE WHEN NEW.status = 'needs_reauth' THEN now() END;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS ad_connections_mark_reauth_ins ON nexcomet.ad_connections;
CREATE TRIGGER ad_connections_mark_reauth_ins BEFORE INSERT ON nexcomet.ad_connections
    FOR EACH ROW WHEN (NEW.status = 'needs_reauth')
    EXECUTE FUNCTION nexcomet.ad_connections_mark_reauth();
DROP TRIGGER IF EXISTS ad_connections_mark_reauth_upd ON nexcomet.ad_connections;
CREATE TRIGGER ad_connections_mark_reauth_upd BEFORE UPDATE OF status ON nexcomet.ad_connections
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION nexcomet.ad_connections_mark_reauth();
