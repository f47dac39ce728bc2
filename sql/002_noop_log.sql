-- Diagnostic: the `noop` job kind writes one row here per execution when its args say {"record": true}.
-- Tests and benchmarks count executions with it (exactly-once checks); production never needs it.
CREATE TABLE IF NOT EXISTS nexjobs.noop_log (
    job_id   bigint NOT NULL,
    attempt  integer NOT NULL,
    worker   text NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS noop_log_job_idx ON nexjobs.noop_log (job_id);
