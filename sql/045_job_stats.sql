-- Cumulative job statistics for Prometheus (`nexjobs serve` /metrics): outcome counters and histograms of attempt
-- duration and of the wait from due to start, per kind and queue. Counters only ever grow (pruning jobs does not
-- lower them), so every serve process reports the same monotonic series from the database.
--
-- A statement-level trigger with transition tables on nexjobs.jobs does the counting: one aggregated upsert per
-- UPDATE statement (the worker completes jobs in batches), none per row. Rows are sharded by the writing backend
-- (pg_backend_pid() % 16) so concurrent workers rarely wait on the same counter row; readers sum the shards.
-- Idempotent: IF NOT EXISTS / CREATE OR REPLACE.

-- Histogram bucket upper bounds in seconds (Prometheus `le`, inclusive); a last bucket (index = length + 1 in
-- width_bucket terms) holds everything above, the +Inf bucket. Both histograms use the same bounds.
CREATE OR REPLACE FUNCTION nexjobs.job_stats_bounds() RETURNS float8[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,300,900,3600}'::float8[]
$$;

-- Observations per bucket: metric 'duration' (attempt start to its end: completed, failed, retried, snoozed,
-- handed back or cancelled while running) and 'wait' (run_at to attempt start, i.e. how long a due job waited for
-- a worker). bucket 0..16: index into job_stats_bounds() (0 = le 0.005 ... 15 = le 3600, 16 = above 3600).
CREATE TABLE IF NOT EXISTS nexjobs.job_stats_buckets (
    kind    text NOT NULL,
    queue   text NOT NULL,
    metric  text NOT NULL CHECK (metric IN ('duration', 'wait')),
    bucket  smallint NOT NULL CHECK (bucket BETWEEN 0 AND 16),
    shard   smallint NOT NULL,
    count   bigint NOT NULL DEFAULT 0,
    sum     float8 NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, queue, metric, bucket, shard)
);

-- Outcomes of attempts and jobs: completed, failed (no attempt left, discarded, or rescued on its last attempt),
-- retried (back to retryable after an error or a rescue), snoozed (handed back with a delay), handed_back
-- (returned undone at shutdown), cancelled (from any unfinished state).
CREATE TABLE IF NOT EXISTS nexjobs.job_stats_outcomes (
    kind     text NOT NULL,
    queue    text NOT NULL,
    outcome  text NOT NULL CHECK (outcome IN ('completed', 'failed', 'retried', 'snoozed', 'handed_back', 'cancelled')),
    shard    smallint NOT NULL,
    count    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, queue, outcome, shard)
);

CREATE OR REPLACE FUNCTION nexjobs.job_stats_record() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_shard smallint := (pg_backend_pid() % 16)::smallint;
BEGIN
    -- Rows are inserted in key order so two statements on the same shard lock counter rows in the same order.
    INSERT INTO nexjobs.job_stats_outcomes AS s (kind, queue, outcome, shard, count)
    SELECT n.kind, n.queue,
           CASE WHEN n.state = 'cancelled' THEN 'cancelled'
                WHEN n.state = 'completed' THEN 'completed'
                WHEN n.state = 'failed' THEN 'failed'
                WHEN n.state = 'retryable' THEN 'retried'
                WHEN n.run_at > now() THEN 'snoozed'
                ELSE 'handed_back' END AS outcome,
           v_shard, count(*)
      FROM old_rows o JOIN new_rows n ON n.id = o.id
     WHERE (o.state = 'running' AND n.state <> 'running')
        OR (n.state = 'cancelled' AND o.state IN ('available', 'retryable'))
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
    ON CONFLICT (kind, queue, outcome, shard) DO UPDATE SET count = s.count + excluded.count;

    -- Values are in microseconds, so "le" is inclusive: a value equal to a bound lands in that bound's bucket.
    INSERT INTO nexjobs.job_stats_buckets AS s (kind, queue, metric, bucket, shard, count, sum)
    SELECT a.kind, a.queue, m.metric,
           width_bucket(m.value - 0.0000005, nexjobs.job_stats_bounds())::smallint, v_shard, count(*), sum(m.value)
      FROM (SELECT n.kind, n.queue, o.attempted_at, o.run_at
              FROM old_rows o JOIN new_rows n ON n.id = o.id
             WHERE o.state = 'running' AND n.state <> 'running' AND o.attempted_at IS NOT NULL) a
     CROSS JOIN LATERAL (VALUES
            ('duration', greatest(extract(epoch FROM now() - a.attempted_at), 0)::float8),
            ('wait', greatest(extract(epoch FROM a.attempted_at - a.run_at), 0)::float8)) AS m(metric, value)
     GROUP BY 1, 2, 3, 4
     ORDER BY 1, 2, 3, 4
    ON CONFLICT (kind, queue, metric, bucket, shard)
       DO UPDATE SET count = s.count + excluded.count, sum = s.sum + excluded.sum;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_stats ON nexjobs.jobs;
CREATE TRIGGER jobs_stats AFTER UPDATE ON nexjobs.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nexjobs.job_stats_record();
