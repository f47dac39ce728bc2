-- Client-side rate limits for ad platform API calls, shared by every worker process.
-- Idempotent: CREATE ... IF NOT EXISTS / CREATE OR REPLACE only.
--
-- One row per platform + ad account ('tiktok:7001...', 'snapchat:<uuid>'). `next_slot` is the earliest instant the
-- next request for that key may be sent. Reserving a slot is one atomic statement (nexjobs.rate_limit_reserve), so
-- any number of processes pace one account together: each caller gets its own slot `spacing` after the previous one
-- and sleeps until it. The database clock is the only clock involved.

CREATE SCHEMA IF NOT EXISTS nexjobs;

CREATE TABLE IF NOT EXISTS nexjobs.rate_limits (
    key        text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 300),
    next_slot  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Reserves the next request slot for p_key, spacing requests p_spacing_us microseconds apart.
-- Returns the microseconds the caller must wait before sending (0 = now), or NULL when the wait would exceed
-- p_max_wait_us; a refused caller takes no slot, so giving up does not delay the others.
CREATE OR REPLACE FUNCTION nexjobs.rate_limit_reserve(p_key text, p_spacing_us bigint, p_max_wait_us bigint)
RETURNS bigint
LANGUAGE sql
VOLATILE
AS $$
    INSERT INTO nexjobs.rate_limits AS r (key, next_slot, updated_at)
    VALUES (p_key, clock_timestamp() + p_spacing_us * interval '1 microsecond', now())
    ON CONFLICT (key) DO UPDATE
        SET next_slot = greatest(r.next_slot, clock_timestamp()) + p_spacing_us * interval '1 microsecond',
            updated_at = now()
        WHERE r.next_slot - clock_timestamp() <= p_max_wait_us * interval '1 microsecond'
    RETURNING greatest(
        0,
        (extract(epoch FROM (r.next_slot - p_spacing_us * interval '1 microsecond' - clock_timestamp()))
            * 1000000)::bigint);
$$;

-- Keys idle for a day carry no pacing information any more; maintenance may delete them.
CREATE OR REPLACE FUNCTION nexjobs.rate_limit_prune() RETURNS integer
LANGUAGE sql
AS $$
    WITH gone AS (
        DELETE FROM nexjobs.rate_limits WHERE next_slot < now() - interval '1 day' RETURNING 1
    )
    SELECT count(*)::integer FROM gone;
$$;
