-- Issue 14 (scale): spread the syncs after a connection's first one over a whole cadence.
-- (The function is restated in full: applied migrations are never edited, so CREATE OR REPLACE repeats sql/040's
-- body with the one change below.)
--
-- Before: every enqueue moved next_sync_at to now() + cadence * (1 + 0...jitter). Connections added together (a
-- deploy, an import: next_sync_at defaults to now()) were enqueued together and then stayed within 10 % of a
-- cadence of each other for ever, so every hour began with the same burst against the platforms' per-app quotas.
-- Now a connection that has never synced (last_synced_at IS NULL) gets its next sync at now() + cadence * (0...1):
-- a uniform phase, kept by the later syncs' 0...10 % jitter. The first syncs themselves still start at once (a
-- new connection wants its data; the queue and the rate limiter pace them).
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
        SELECT c.id, c.sync_cadence, c.last_synced_at IS NULL AS first_sync
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
           SET next_sync_at = now() + d.sync_cadence * CASE WHEN d.first_sync THEN random()
                                                             ELSE 1 + random() * greatest(jitter, 0) END
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
