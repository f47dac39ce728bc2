-- One insert path for every enqueue (issue 11, JobStore): nexjobs.insert_jobs inserts a batch of jobs with one
-- statement, skips those whose unique key is held by a live job (ON CONFLICT DO NOTHING) and sends one NOTIFY
-- per queue that got a job due now. JobClient.enqueueMany (Sources/Queue/JobStore.swift), nexjobs.enqueue_ex
-- (and so nexjobs.enqueue) and the due-work functions of sql/021 all call it.

-- Inserts the jobs given as parallel arrays (one element per job; multi-argument unnest pads a shorter or NULL
-- array with NULLs, which take the column defaults below). Returns the inserted jobs' ids and queues, in input
-- order; skipped duplicates return nothing.
CREATE OR REPLACE FUNCTION nexjobs.insert_jobs(
    p_kinds text[],
    p_args jsonb[],
    p_queues text[],
    p_priorities smallint[],
    p_run_ats timestamptz[],
    p_unique_keys text[],
    p_max_attempts integer[])
RETURNS TABLE (job_id bigint, job_queue text)
LANGUAGE plpgsql AS $$
BEGIN
    -- 'infinity' / '-infinity' would be stored and break every reader's arithmetic: refuse them with SQLSTATE 22008
    -- (datetime_field_overflow, a data exception: the CLI maps class 22 to exit 2).
    IF EXISTS (SELECT 1 FROM unnest(p_run_ats) r WHERE r IS NOT NULL AND NOT isfinite(r)) THEN
        RAISE EXCEPTION 'nexjobs.enqueue: run_at must be a finite timestamp' USING ERRCODE = '22008';
    END IF;
    RETURN QUERY
    WITH ins AS (
        INSERT INTO nexjobs.jobs AS j (kind, args, queue, priority, run_at, unique_key, max_attempts)
        SELECT t.k, coalesce(t.a, '{}'), coalesce(t.q, 'default'), coalesce(t.p, 0), coalesce(t.r, now()), t.u,
               coalesce(t.m, 20)
          FROM unnest(p_kinds, p_args, p_queues, p_priorities, p_run_ats, p_unique_keys, p_max_attempts)
               AS t(k, a, q, p, r, u, m)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'retryable', 'running')
        DO NOTHING
        RETURNING j.id, j.queue, j.run_at
    ), woke AS (
        SELECT pg_notify('nexjobs_jobs', d.queue)
          FROM (SELECT DISTINCT ins.queue FROM ins WHERE ins.run_at <= now()) d
    )
    SELECT ins.id, ins.queue FROM ins, (SELECT count(*) FROM woke) w;
END
$$;

-- Enqueue one job through insert_jobs; returns its id and whether an existing live job with the same unique key
-- was returned instead. Same signature and behaviour as in sql/001.
CREATE OR REPLACE FUNCTION nexjobs.enqueue_ex(
    kind text,
    args jsonb DEFAULT '{}',
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    unique_key text DEFAULT NULL,
    max_attempts integer DEFAULT 20,
    OUT id bigint,
    OUT duplicate boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
BEGIN
    IF enqueue_ex.kind IS NULL THEN
        RAISE EXCEPTION 'nexjobs.enqueue: kind must not be null' USING ERRCODE = '22004';
    END IF;
    LOOP
        SELECT i.job_id INTO enqueue_ex.id
          FROM nexjobs.insert_jobs(ARRAY[enqueue_ex.kind], ARRAY[enqueue_ex.args], ARRAY[enqueue_ex.queue],
                                   ARRAY[enqueue_ex.priority::smallint], ARRAY[enqueue_ex.run_at],
                                   ARRAY[enqueue_ex.unique_key], ARRAY[enqueue_ex.max_attempts]) i;
        IF enqueue_ex.id IS NOT NULL THEN
            duplicate := false;
            RETURN;
        END IF;
        SELECT j.id INTO enqueue_ex.id FROM nexjobs.jobs j
         WHERE j.unique_key = enqueue_ex.unique_key AND j.state IN ('available', 'retryable', 'running');
        IF enqueue_ex.id IS NOT NULL THEN
            duplicate := true;
            RETURN;
        END IF;
        -- The holder finished between our insert and select: try again.
    END LOOP;
END
$$;

-- sql/021's due-work functions, unchanged except that they insert through insert_jobs (which notifies). They are
-- restated in full on purpose: an applied migration is never edited, so CREATE OR REPLACE repeats the body (the same
-- holds for enqueue_ex above, first defined in sql/001).
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
    ), batch AS (
        SELECT array_agg('sync_connection'::text) AS k,
               array_agg(jsonb_build_object('connection_id', d.id::text)) AS a,
               array_agg(queue) AS q, array_agg(priority::smallint) AS p,
               array_agg('sync_connection:' || d.id) AS u
          FROM d
    ), ins AS (
        SELECT i.job_id FROM batch, nexjobs.insert_jobs(batch.k, batch.a, batch.q, batch.p, NULL, batch.u, NULL) i
    ), adv AS (
        UPDATE nexcomet.ad_connections c
           SET next_sync_at = now() + d.sync_cadence * (1 + random() * greatest(jitter, 0))
          FROM d
         WHERE c.id = d.id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM adv), (SELECT count(*) FROM ins) INTO due, enqueued;
END
$$;

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
    ), batch AS (
        SELECT array_agg('refresh_token'::text) AS k,
               array_agg(jsonb_build_object('connection_id', d.id::text)) AS a,
               array_agg(queue) AS q, array_agg(priority::smallint) AS p,
               array_agg('refresh_token:' || d.id) AS u
          FROM d
    ), ins AS (
        SELECT i.job_id FROM batch, nexjobs.insert_jobs(batch.k, batch.a, batch.q, batch.p, NULL, batch.u, NULL) i
    ), mark AS (
        UPDATE nexcomet.ad_connections c SET refresh_enqueued_at = now() FROM d WHERE c.id = d.id RETURNING 1
    )
    SELECT count(*) FROM ins INTO n;
    RETURN n;
END
$$;
