-- Issue 14 (scale: "the scheduler should spread first syncs"): first syncs are admitted by backlog. A deploy that
-- brings thousands of new connections at once used to enqueue every first sync in one tick (10,000 discoveries,
-- then ~20,000 account syncs, in the queue at once: p99 queue wait 51.5 min in bench/sync, and any connection's
-- regular sync waited behind the whole wave). Now a connection that was never synced is enqueued only while fewer
-- than `first_sync_backlog` sync jobs (sync_connection and sync_ad_account, available or retryable) wait; the others
-- stay due in nexcomet.ad_connections, in next_sync_at order, and are admitted as the backlog drains. Connections
-- synced before are enqueued as they come due, whatever the backlog. NULL: no limit (sql/065's behaviour).
-- (sql/065's body restated with that change: applied migrations are never edited. The five-argument function is
-- dropped first so that no call can match two overloads.)
DROP FUNCTION IF EXISTS nexcomet.enqueue_due_syncs(integer, double precision, text, integer, jsonb);
CREATE OR REPLACE FUNCTION nexcomet.enqueue_due_syncs(
    batch_size integer DEFAULT 10000,
    jitter double precision DEFAULT 0.1,
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    platform_queues jsonb DEFAULT '{}',
    first_sync_backlog integer DEFAULT NULL,
    OUT due integer,
    OUT enqueued integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    queues text[];
    q text;
    first_limit integer := batch_size;
    waiting integer;
BEGIN
    IF first_sync_backlog IS NOT NULL THEN
        -- Counted up to the limit only: the scan stops there however deep the queue is.
        SELECT count(*) INTO waiting FROM (
            SELECT 1 FROM nexjobs.jobs j
             WHERE j.state IN ('available', 'retryable') AND j.kind IN ('sync_connection', 'sync_ad_account')
             LIMIT greatest(first_sync_backlog, 0)
        ) w;
        first_limit := least(batch_size, greatest(first_sync_backlog - waiting, 0));
    END IF;
    WITH later AS (
        SELECT c.id, c.sync_cadence, false AS first_sync, coalesce(platform_queues->>c.platform, queue) AS target
          FROM nexcomet.ad_connections c
          JOIN nexcomet.organizations o ON o.id = c.organization_id
         WHERE c.status = 'active' AND c.next_sync_at <= now() AND c.last_synced_at IS NOT NULL
           AND NOT o.processing_restricted AND o.deleted_at IS NULL
         ORDER BY c.next_sync_at
         LIMIT batch_size
           FOR UPDATE OF c SKIP LOCKED
    ), firsts AS (
        SELECT c.id, c.sync_cadence, true AS first_sync, coalesce(platform_queues->>c.platform, queue) AS target
          FROM nexcomet.ad_connections c
          JOIN nexcomet.organizations o ON o.id = c.organization_id
         WHERE c.status = 'active' AND c.next_sync_at <= now() AND c.last_synced_at IS NULL
           AND NOT o.processing_restricted AND o.deleted_at IS NULL
         ORDER BY c.next_sync_at
         LIMIT first_limit
           FOR UPDATE OF c SKIP LOCKED
    ), d AS (
        SELECT * FROM later UNION ALL SELECT * FROM firsts
    ), ins AS (
        INSERT INTO nexjobs.jobs AS j (kind, args, queue, priority, unique_key)
        SELECT 'sync_connection', jsonb_build_object('connection_id', d.id::text), d.target, priority,
               'sync_connection:' || d.id
          FROM d
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'retryable', 'running')
        DO NOTHING
        RETURNING j.queue  -- qualified: a bare `queue` is the parameter (#variable_conflict use_variable)
    ), adv AS (
        UPDATE nexcomet.ad_connections c
           SET next_sync_at = now() + d.sync_cadence * CASE WHEN d.first_sync THEN random()
                                                             ELSE 1 + random() * greatest(jitter, 0) END
          FROM d
         WHERE c.id = d.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM adv), (SELECT count(*) FROM ins), (SELECT array_agg(DISTINCT ins.queue) FROM ins)
      INTO due, enqueued, queues;
    FOREACH q IN ARRAY coalesce(queues, '{}') LOOP
        PERFORM pg_notify('nexjobs_jobs', q);
    END LOOP;
END
$$;
