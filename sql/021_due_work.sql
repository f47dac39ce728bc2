-- Due work the scheduler leader enqueues each tick: one set-based statement per kind, reading only due rows
-- through partial indexes, so a tick costs O(work due) rather than O(connections).
-- Restricted (GDPR restrict/object) and soft-deleted organizations are never scheduled; their due connections
-- stay due, so lifting the restriction schedules them on the next tick.

-- Enqueue sync_connection for up to batch_size due connections (oldest due first) and advance their next_sync_at
-- to now() + cadence + a random share (0...jitter) of the cadence, so connections spread over time. A live job
-- with the same unique key ('sync_connection:<id>') means a sync is still pending or running: nothing is added,
-- the time still advances. Returns the number of jobs inserted. Callers loop while it returns batch_size.
CREATE OR REPLACE FUNCTION nexcomet.enqueue_due_syncs(
    batch_size integer DEFAULT 10000,
    jitter double precision DEFAULT 0.1,
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    OUT due integer,
    OUT enqueued integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    WITH d AS (
        SELECT c.id, c.sync_cadence
          FROM nexcomet.ad_connections c
          JOIN nexcomet.organizations o ON o.id = c.organization_id
         WHERE c.status = 'active' AND c.next_sync_at <= now()
           AND NOT o.processing_restricted AND o.deleted_at IS NULL
         ORDER BY c.next_sync_at
         LIMIT batch_size
           FOR UPDATE OF c SKIP LOCKED
    ), ins AS (
        INSERT INTO nexjobs.jobs (kind, args, queue, priority, unique_key)
        SELECT 'sync_connection', jsonb_build_object('connection_id', d.id::text), queue, priority,
               'sync_connection:' || d.id
          FROM d
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'retryable', 'running')
        DO NOTHING
        RETURNING 1
    ), adv AS (
        UPDATE nexcomet.ad_connections c
           SET next_sync_at = now() + d.sync_cadence * (1 + random() * greatest(jitter, 0))
          FROM d
         WHERE c.id = d.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM adv), (SELECT count(*) FROM ins) INTO due, enqueued;
    IF enqueued > 0 THEN
        PERFORM pg_notify('nexjobs_jobs', queue);
    END IF;
END
$$;

-- Enqueue refresh_token for up to batch_size active connections whose access token expires within `margin` and
-- that hold a refresh token still valid. `retry_after` throttles a connection whose last refresh did not move its
-- expiry (a failed refresh is retried by the job itself; this only stops a fresh job every tick). Unique key
-- 'refresh_token:<id>'. Returns the number of jobs inserted.
CREATE OR REPLACE FUNCTION nexcomet.enqueue_due_refreshes(
    margin interval DEFAULT '10 minutes',
    batch_size integer DEFAULT 10000,
    retry_after interval DEFAULT '15 minutes',
    queue text DEFAULT 'default',
    priority integer DEFAULT -10)
RETURNS integer LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    n integer;
BEGIN
    WITH d AS (
        SELECT c.id
          FROM nexcomet.ad_connections c
          JOIN nexcomet.organizations o ON o.id = c.organization_id
         WHERE c.status = 'active' AND c.access_token_expires_at <= now() + margin
           AND c.refresh_token_ciphertext IS NOT NULL
           AND (c.refresh_token_expires_at IS NULL OR c.refresh_token_expires_at > now())
           AND (c.refresh_enqueued_at IS NULL OR c.refresh_enqueued_at <= now() - retry_after)
           AND NOT o.processing_restricted AND o.deleted_at IS NULL
         ORDER BY c.access_token_expires_at
         LIMIT batch_size
           FOR UPDATE OF c SKIP LOCKED
    ), ins AS (
        INSERT INTO nexjobs.jobs (kind, args, queue, priority, unique_key)
        SELECT 'refresh_token', jsonb_build_object('connection_id', d.id::text), queue, priority,
               'refresh_token:' || d.id
          FROM d
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'retryable', 'running')
        DO NOTHING
        RETURNING 1
    ), mark AS (
        UPDATE nexcomet.ad_connections c SET refresh_enqueued_at = now() FROM d WHERE c.id = d.id RETURNING 1
    )
    SELECT count(*) FROM ins INTO n;
    IF n > 0 THEN
        PERFORM pg_notify('nexjobs_jobs', queue);
    END IF;
    RETURN n;
END
$$;
