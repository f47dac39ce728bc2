-- Cumulative job statistics for Prometheus (`nexjobs serve` /metrics): outcome counters and histograms of attempt
-- duration and of the wait from due to start, per kind and queue. Counters only ever grow (pruning jobs does not
-- lower them), so every serve process reports the same monotonic series from the database.
--
-- A row trigger, fired only when an attempt ends or an unfinished job is cancelled (its WHEN clause skips claims and
-- every other update without calling any function), appends one row to the unlogged staging table
-- job_stats_events; nexjobs.job_stats_fold(), called by serve before it renders /metrics, moves the staged rows
-- into the cumulative tables in one statement. Appending is cheap and contention-free (no shared counter row is
-- locked by the completing transaction). Measured alternatives (bench/README.md): a statement-level trigger with
-- transition tables cost far more on the drain, because every UPDATE of jobs (claims included) captures them.
-- Staged rows not yet folded are lost if PostgreSQL crashes (unlogged): counters then undercount, never decrease.
-- Idempotent: IF NOT EXISTS / CREATE OR REPLACE.

-- Histogram bucket upper bounds in seconds (Prometheus `le`, inclusive); a last bucket (index = length + 1 in
-- width_bucket terms) holds everything above, the +Inf bucket. Both histograms use the same bounds.
CREATE OR REPLACE FUNCTION nexjobs.job_stats_bounds() RETURNS float8[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,300,900,3600}'::float8[]
$$;

-- Observations per bucket (shard is always 0 now; kept in the key for future spreading): metric 'duration' (attempt start to its end: completed, failed, retried, snoozed,
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

CREATE UNLOGGED TABLE IF NOT EXISTS nexjobs.job_stats_events (
    kind      text NOT NULL,
    queue     text NOT NULL,
    outcome   text NOT NULL,
    duration  float8,   -- NULL for a job cancelled before it ran
    wait      float8
);

CREATE OR REPLACE FUNCTION nexjobs.job_stats_event() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO nexjobs.job_stats_events (kind, queue, outcome, duration, wait)
    VALUES (NEW.kind, NEW.queue,
            CASE WHEN NEW.state = 'cancelled' THEN 'cancelled'
                 WHEN NEW.state = 'completed' THEN 'completed'
                 WHEN NEW.state = 'failed' THEN 'failed'
                 WHEN NEW.state = 'retryable' THEN 'retried'
                 WHEN NEW.run_at > now() THEN 'snoozed'
                 ELSE 'handed_back' END,
            CASE WHEN OLD.state = 'running' AND OLD.attempted_at IS NOT NULL
                 THEN greatest(extract(epoch FROM now() - OLD.attempted_at), 0)::float8 END,
            CASE WHEN OLD.state = 'running' AND OLD.attempted_at IS NOT NULL
                 THEN greatest(extract(epoch FROM OLD.attempted_at - OLD.run_at), 0)::float8 END);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS jobs_stats ON nexjobs.jobs;
CREATE TRIGGER jobs_stats AFTER UPDATE OF state ON nexjobs.jobs
    FOR EACH ROW
    WHEN ((OLD.state = 'running' AND NEW.state <> 'running')
          OR (NEW.state = 'cancelled' AND OLD.state IN ('available', 'retryable')))
    EXECUTE FUNCTION nexjobs.job_stats_event();

-- Moves staged events into the cumulative tables; returns how many. Safe to run concurrently: each staged row is
-- deleted (and so counted) by exactly one caller, and counter rows are upserted in key order.
-- Values are in microseconds, so "le" is inclusive: a value equal to a bound lands in that bound's bucket.
CREATE OR REPLACE FUNCTION nexjobs.job_stats_fold() RETURNS bigint
LANGUAGE sql AS $$
    WITH moved AS (
        DELETE FROM nexjobs.job_stats_events RETURNING kind, queue, outcome, duration, wait
    ), outcomes AS (
        INSERT INTO nexjobs.job_stats_outcomes AS s (kind, queue, outcome, shard, count)
        SELECT kind, queue, outcome, 0, count(*) FROM moved GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (kind, queue, outcome, shard) DO UPDATE SET count = s.count + excluded.count
        RETURNING 1
    ), buckets AS (
        INSERT INTO nexjobs.job_stats_buckets AS s (kind, queue, metric, bucket, shard, count, sum)
        SELECT m.kind, m.queue, x.metric,
               width_bucket(x.value - 0.0000005, nexjobs.job_stats_bounds())::smallint, 0, count(*), sum(x.value)
          FROM moved m
         CROSS JOIN LATERAL (VALUES ('duration', m.duration), ('wait', m.wait)) AS x(metric, value)
         WHERE x.value IS NOT NULL
         GROUP BY 1, 2, 3, 4
         ORDER BY 1, 2, 3, 4
        ON CONFLICT (kind, queue, metric, bucket, shard)
           DO UPDATE SET count = s.count + excluded.count, sum = s.sum + excluded.sum
        RETURNING 1
    )
    SELECT count(*) FROM moved
$$;
