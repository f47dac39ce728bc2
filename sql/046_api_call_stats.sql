-- Platform API calls by platform and HTTP status class, for Prometheus (`nexjobs_platform_api_calls_total`).
-- Each sync run records its requests' status classes (api_calls_by_status: {"2xx": n, "4xx": n, "5xx": n,
-- "error": n}, where "error" is a request that got no response); a trigger adds them to cumulative counters that
-- never decrease, so pruning sync_runs does not lower them. Token refreshes are counted in api_calls only.
ALTER TABLE nexcomet.sync_runs ADD COLUMN IF NOT EXISTS api_calls_by_status jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(api_calls_by_status) = 'object');

CREATE TABLE IF NOT EXISTS nexcomet.api_call_totals (
    platform      text NOT NULL,
    status_class  text NOT NULL CHECK (status_class ~ '^[a-z0-9_]{1,16}$'),
    shard         smallint NOT NULL,
    count         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (platform, status_class, shard)
);

CREATE OR REPLACE FUNCTION nexcomet.api_call_totals_record() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO nexcomet.api_call_totals AS t (platform, status_class, shard, count)
    SELECT c.platform, e.key, (pg_backend_pid() % 16)::smallint, sum(e.value::bigint)
      FROM new_rows r
      JOIN nexcomet.ad_connections c ON c.id = r.connection_id
     CROSS JOIN LATERAL jsonb_each_text(r.api_calls_by_status) e
     WHERE e.key ~ '^[a-z0-9_]{1,16}$' AND e.value ~ '^[0-9]{1,12}$'
     GROUP BY 1, 2
     ORDER BY 1, 2
    ON CONFLICT (platform, status_class, shard) DO UPDATE SET count = t.count + excluded.count;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS sync_runs_api_calls ON nexcomet.sync_runs;
CREATE TRIGGER sync_runs_api_calls AFTER INSERT ON nexcomet.sync_runs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nexcomet.api_call_totals_record();
