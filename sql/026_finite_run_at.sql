-- Hardening (issue 10): the stats view reads rows that already hold such a value (now() - '-infinity' raises "interval out of range"; the age is now
-- computed on epoch seconds, so an infinitely old due job reports an infinite age instead of failing the view).
-- Enqueueing refuses run_at values that are not finite: see nexjobs.insert_jobs in sql/040, the one insert path.

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
