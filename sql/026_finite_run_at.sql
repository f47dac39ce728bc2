-- Hardening (issue 10): nexjobs.enqueue refuses run_at values that are not finite ('infinity', '-infinity'), with
-- SQLSTATE 22008 (datetime_field_overflow, a data exception: the CLI maps class 22 to exit 2), and the stats view
-- reads rows that already hold such a value (now() - '-infinity' raises "interval out of range"; the age is now
-- computed on epoch seconds, so an infinitely old due job reports an infinite age instead of failing the view).

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
    IF NOT isfinite(v_run_at) THEN
        RAISE EXCEPTION 'nexjobs.enqueue: run_at must be a finite timestamp, got %', v_run_at
            USING ERRCODE = '22008';
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

CREATE OR REPLACE VIEW nexjobs.stats AS
SELECT j.queue,
       count(*) FILTER (WHERE j.state = 'available')  AS available,
       count(*) FILTER (WHERE j.state = 'running')    AS running,
       count(*) FILTER (WHERE j.state = 'retryable')  AS retryable,
       count(*) FILTER (WHERE j.state = 'completed')  AS completed,
       count(*) FILTER (WHERE j.state = 'failed')     AS failed,
       count(*) FILTER (WHERE j.state = 'cancelled')  AS cancelled,
       (extract(epoch FROM now())::double precision - extract(epoch FROM min(j.run_at) FILTER (
           WHERE j.state IN ('available', 'retryable') AND j.run_at <= now()))::double precision)
           AS oldest_due_seconds,
       count(*) FILTER (WHERE j.state = 'completed' AND j.finished_at > now() - interval '1 minute')
           AS completed_last_minute,
       count(*) FILTER (WHERE j.state = 'completed' AND j.finished_at > now() - interval '5 minutes')
           AS completed_last_5_minutes
  FROM nexjobs.jobs j
 GROUP BY j.queue;
