-- Per-app request limits on top of the per-account ones (docs: /work/shared/reference/ad-apis.md A5: TikTok app QPS
-- "Basic: 10/sec, Advanced: 20/sec, Premium: 30/sec", codes 40100/40132/40133/61000; B5: Snap publishes no number).
-- Idempotent: CREATE OR REPLACE only; the keys live in nexjobs.rate_limits (050).
--
-- A request needs a slot under every key that paces it at once, e.g. its account ('tiktok:7001...') and its app
-- ('tiktok:app:<app id>'). nexjobs.rate_limit_reserve_all books all of them in one statement:
--   * every key's row is created if missing and locked FOR UPDATE, in one fixed order (key COLLATE "C"), so two
--     callers sharing keys cannot deadlock;
--   * the slot is the latest of now and each key's next_slot;
--   * when the slot is more than p_max_wait_us away, nothing is booked and the result is NULL;
--   * otherwise each key's next_slot becomes slot + its own spacing, and the result is the wait in microseconds.
-- A key given twice counts once, with the larger spacing.

CREATE OR REPLACE FUNCTION nexjobs.rate_limit_reserve_all(
    p_keys text[], p_spacing_us bigint[], p_max_wait_us bigint
) RETURNS bigint
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
    v_now  timestamptz;
    v_slot timestamptz;
    v_next timestamptz;
    v_key  record;
BEGIN
    IF p_keys IS NULL OR p_spacing_us IS NULL OR p_max_wait_us IS NULL
        OR cardinality(p_keys) <> cardinality(p_spacing_us) OR cardinality(p_keys) NOT BETWEEN 1 AND 16
        OR p_max_wait_us < 0
        OR EXISTS (SELECT 1 FROM unnest(p_keys, p_spacing_us) AS u(k, s) WHERE k IS NULL OR s IS NULL OR s < 0)
    THEN
        RAISE EXCEPTION 'rate_limit_reserve_all: 1 to 16 keys with as many spacings >= 0 and a max wait >= 0'
            USING ERRCODE = '22023';
    END IF;
    v_now := clock_timestamp();
    v_slot := v_now;
    FOR v_key IN
        SELECT k, max(s) AS spacing FROM unnest(p_keys, p_spacing_us) AS u(k, s)
        GROUP BY k ORDER BY k COLLATE "C"
    LOOP
        SELECT r.next_slot INTO v_next FROM nexjobs.rate_limits r WHERE r.key = v_key.k FOR UPDATE;
        IF NOT FOUND THEN
            -- A new key is free now; the insert (or the row a concurrent caller just inserted) is locked next.
            INSERT INTO nexjobs.rate_limits (key, next_slot) VALUES (v_key.k, v_now) ON CONFLICT (key) DO NOTHING;
            SELECT r.next_slot INTO v_next FROM nexjobs.rate_limits r WHERE r.key = v_key.k FOR UPDATE;
            IF NOT FOUND THEN
                -- Deleted between the insert and the lock (a concurrent prune): refuse rather than book the other
                -- keys without this one.
                RAISE EXCEPTION 'rate_limit_reserve_all: key % vanished while being reserved', v_key.k
                    USING ERRCODE = '40001';
            END IF;
        END IF;
        v_slot := greatest(v_slot, v_next);
    END LOOP;
    IF v_slot - v_now > p_max_wait_us * interval '1 microsecond' THEN
        RETURN NULL;
    END IF;
    UPDATE nexjobs.rate_limits r
       SET next_slot = v_slot + u.spacing * interval '1 microsecond', updated_at = now()
      FROM (SELECT k, max(s) AS spacing FROM unnest(p_keys, p_spacing_us) AS u(k, s) GROUP BY k) u
     WHERE r.key = u.k;
    RETURN greatest(0, (extract(epoch FROM (v_slot - v_now)) * 1000000)::bigint);
END;
$$;
