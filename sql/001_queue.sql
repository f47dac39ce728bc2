-- NexJobs queue core: jobs, worker leases, and the SQL API (enqueue, retry, cancel, prune, rescue, stats).
-- Idempotent: every object is created with IF NOT EXISTS or CREATE OR REPLACE.

CREATE SCHEMA IF NOT EXISTS nexjobs;

CREATE TABLE IF NOT EXISTS nexjobs.jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.:-]{0,127}$'),
    queue         text NOT NULL DEFAULT 'default' CHECK (queue ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    args          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(args) = 'object'),
    state         text NOT NULL DEFAULT 'available'
                  CHECK (state IN ('available', 'running', 'completed', 'retryable', 'failed', 'cancelled')),
    -- Smaller runs first; ties by run_at then id.
    priority      smallint NOT NULL DEFAULT 0,
    run_at        timestamptz NOT NULL DEFAULT now(),
    attempt       integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts  integer NOT NULL DEFAULT 20 CHECK (max_attempts >= 1),
    unique_key    text,
    -- Lease: the worker process holding the job (see nexjobs.workers) and a hard deadline for the attempt.
    locked_by     text,
    locked_until  timestamptz,
    -- One entry per failed attempt: {"at", "attempt", "error", "worker"}.
    errors        jsonb NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempted_at  timestamptz,
    finished_at   timestamptz
);

-- The claim path only ever sees live, claimable rows.
CREATE INDEX IF NOT EXISTS jobs_claim_idx ON nexjobs.jobs (queue, priority, run_at, id)
    WHERE state IN ('available', 'retryable');
-- A unique key is held while its job is live; finished jobs free it.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_live_idx ON nexjobs.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'retryable', 'running');
CREATE INDEX IF NOT EXISTS jobs_running_idx ON nexjobs.jobs (locked_by) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON nexjobs.jobs (finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');

-- One row per worker process; its heartbeat extends lease_until. A running job whose worker's lease has expired
-- (or whose own deadline passed) is rescued.
CREATE TABLE IF NOT EXISTS nexjobs.workers (
    id            text PRIMARY KEY,
    host          text NOT NULL,
    pid           integer NOT NULL,
    queues        text[] NOT NULL,
    concurrency   integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    lease_until   timestamptz NOT NULL
);

-- Enqueue one job; returns its id and whether an existing live job with the same unique key was returned instead.
-- Sends one NOTIFY on channel nexjobs_jobs (payload: queue) when the job is due now; PostgreSQL delivers it at
-- commit and folds duplicates within a transaction, so there is no per-row trigger.
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
#variable_conflict use_column
DECLARE
    v_run_at timestamptz := coalesce(enqueue_ex.run_at, now());
BEGIN
    IF enqueue_ex.kind IS NULL THEN
        RAISE EXCEPTION 'nexjobs.enqueue: kind must not be null' USING ERRCODE = '22004';
    END IF;
    LOOP
        INSERT INTO nexjobs.jobs AS j (kind, args, queue, priority, run_at, unique_key, max_attempts)
        VALUES (enqueue_ex.kind, coalesce(enqueue_ex.args, '{}'), coalesce(enqueue_ex.queue, 'default'),
                coalesce(enqueue_ex.priority, 0), v_run_at, enqueue_ex.unique_key,
                coalesce(enqueue_ex.max_attempts, 20))
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'retryable', 'running')
        DO NOTHING
        RETURNING j.id INTO enqueue_ex.id;
        IF enqueue_ex.id IS NOT NULL THEN
            duplicate := false;
            IF v_run_at <= now() THEN
                PERFORM pg_notify('nexjobs_jobs', coalesce(enqueue_ex.queue, 'default'));
            END IF;
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

-- The operator's form: returns the job id (the existing one for a live duplicate unique key).
CREATE OR REPLACE FUNCTION nexjobs.enqueue(
    kind text,
    args jsonb DEFAULT '{}',
    queue text DEFAULT 'default',
    priority integer DEFAULT 0,
    run_at timestamptz DEFAULT NULL,
    unique_key text DEFAULT NULL,
    max_attempts integer DEFAULT 20)
RETURNS bigint LANGUAGE sql AS $$
    SELECT (nexjobs.enqueue_ex(kind, args, queue, priority, run_at, unique_key, max_attempts)).id
$$;

-- Make a job run again now. From failed/cancelled/completed it is revived with one more attempt allowed;
-- from available/retryable it is made due now. Returns false when the job is running or missing.
CREATE OR REPLACE FUNCTION nexjobs.retry(job_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
BEGIN
    UPDATE nexjobs.jobs j
       SET state = 'available', run_at = now(), finished_at = NULL, locked_by = NULL, locked_until = NULL,
           max_attempts = greatest(j.max_attempts, j.attempt + 1)
     WHERE j.id = job_id AND j.state <> 'running'
    RETURNING j.queue INTO v_queue;
    IF v_queue IS NULL THEN RETURN false; END IF;
    PERFORM pg_notify('nexjobs_jobs', v_queue);
    RETURN true;
END
$$;

-- Cancel a job that has not finished. A running job's worker is told through NOTIFY nexjobs_cancel (and its
-- heartbeat) and stops it; its late completion cannot overwrite 'cancelled'. Returns false if already finished.
CREATE OR REPLACE FUNCTION nexjobs.cancel(job_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_found boolean;
BEGIN
    UPDATE nexjobs.jobs j SET state = 'cancelled', finished_at = now()
     WHERE j.id = job_id AND j.state IN ('available', 'retryable', 'running')
    RETURNING true INTO v_found;
    IF v_found THEN
        PERFORM pg_notify('nexjobs_cancel', job_id::text);
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- Rescue running jobs whose worker stopped heartbeating or whose deadline passed: back to 'retryable' (or
-- 'failed' when no attempt is left), with the rescue recorded in the error history. SKIP LOCKED plus the state
-- predicate make each job rescued by exactly one caller. Returns the number rescued (at most batch_size).
CREATE OR REPLACE FUNCTION nexjobs.rescue(batch_size integer DEFAULT 1000) RETURNS integer
LANGUAGE sql AS $$
    WITH stale AS (
        SELECT j.id FROM nexjobs.jobs j
         WHERE j.state = 'running'
           AND (j.locked_until < now()
                OR NOT EXISTS (SELECT 1 FROM nexjobs.workers w WHERE w.id = j.locked_by AND w.lease_until > now()))
         ORDER BY j.id
         LIMIT batch_size
         FOR UPDATE SKIP LOCKED
    ), done AS (
        UPDATE nexjobs.jobs j
           SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'retryable' END,
               finished_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,
               run_at = now(),
               errors = j.errors || jsonb_build_array(jsonb_build_object(
                   'at', now(), 'attempt', j.attempt, 'worker', j.locked_by,
                   'error', CASE WHEN j.locked_until < now() THEN 'rescued: attempt passed its deadline'
                                 ELSE 'rescued: worker ' || coalesce(j.locked_by, '?') || ' lost its lease' END)),
               locked_by = NULL, locked_until = NULL
          FROM stale WHERE j.id = stale.id AND j.state = 'running'
        RETURNING 1
    )
    SELECT count(*)::integer FROM done
$$;

-- Delete finished jobs older than their retention, at most batch_size per call (callers loop while it returns
-- batch_size), so no call holds a long transaction.
CREATE OR REPLACE FUNCTION nexjobs.prune(
    completed_retention interval DEFAULT '24 hours',
    failed_retention interval DEFAULT '14 days',
    batch_size integer DEFAULT 5000) RETURNS integer
LANGUAGE sql AS $$
    WITH old AS (
        SELECT j.id FROM nexjobs.jobs j
         WHERE (j.state = 'completed' AND j.finished_at < now() - completed_retention)
            OR (j.state IN ('failed', 'cancelled') AND j.finished_at < now() - failed_retention)
         LIMIT batch_size
         FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM nexjobs.jobs j USING old WHERE j.id = old.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

-- Counts by queue and state, with the oldest due job's age and recent throughput.
CREATE OR REPLACE VIEW nexjobs.stats AS
SELECT j.queue,
       count(*) FILTER (WHERE j.state = 'available')  AS available,
       count(*) FILTER (WHERE j.state = 'running')    AS running,
       count(*) FILTER (WHERE j.state = 'retryable')  AS retryable,
       count(*) FILTER (WHERE j.state = 'completed')  AS completed,
       count(*) FILTER (WHERE j.state = 'failed')     AS failed,
       count(*) FILTER (WHERE j.state = 'cancelled')  AS cancelled,
       extract(epoch FROM now() - min(j.run_at) FILTER (
           WHERE j.state IN ('available', 'retryable') AND j.run_at <= now()))::double precision
           AS oldest_due_seconds,
       count(*) FILTER (WHERE j.state = 'completed' AND j.finished_at > now() - interval '1 minute')
           AS completed_last_minute,
       count(*) FILTER (WHERE j.state = 'completed' AND j.finished_at > now() - interval '5 minutes')
           AS completed_last_5_minutes
  FROM nexjobs.jobs j
 GROUP BY j.queue;
