-- Issue 14 (scale): each platform's sync jobs in a queue of its own, discovery included.
-- NEXJOBS_SYNC_QUEUE_TIKTOK / _SNAPCHAT already route a connection's sync_ad_account jobs; this routes the
-- scheduler's sync_connection jobs the same way, so a Snap connection's discovery does not wait behind TikTok
-- discoveries held by TikTok's per-app quota. `platform_queues` maps a platform to its queue
-- ({"tiktok": "sync.tiktok"}); a platform it does not name uses `queue`. One NOTIFY per queue that got jobs.
-- (sql/063's body restated with that change: applied migrations are never edited. The old four-argument function is
-- dropped first so that no call can match two overloads.)
DROP FUNCTION IF EXISTS nexcomet.enqueue_due_syncs(integer, double precision, text, integer);
CREATE OR REPLACE FUNCTION nexcomet.enqueue_due_syncs(
    batch_size integer DEFAULT 10000,
    jitter double precision DEFAULT 0.1,
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    platform_queues jsonb DEFAULT '{}',
    OUT due integer,
    OUT enqueued integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    queues text[];
    q text;
BEGIN
    WITH d AS (
        SELECT c.id, c.sync_cadence, c.last_synced_at IS NULL AS first_sync,
               coalesce(platform_queues->>c.platform, queue) AS target
          FROM nexcomet.ad_connections c
          JOIN nexcomet.organizations o ON o.id = c.organization_id
         WHERE c.status = 'active' AND c.next_sync_at <= now()
           AND NOT o.processing_restricted AND o.deleted_at IS NULL
         ORDER BY c.next_sync_at
         LIMIT batch_size
           FOR UPDATE OF c SKIP LOCKED
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
