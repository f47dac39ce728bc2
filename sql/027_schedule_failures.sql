-- Isolated schedule failures: a schedule that cannot be computed or fired is skipped with a visible last_error and
-- retried with a growing delay, while every other schedule keeps firing.
--   failures  consecutive failed attempts (0 when the last attempt fired or computed its next fire time)
--   retry_at  the scheduler does not look at the schedule again before this (NULL: no backoff in effect)
-- The backoff is 10 s after the first failure, doubling each time, at most 1 hour. A fire that succeeds clears
-- last_error, failures and retry_at. A fire-time failure keeps next_fire_at, so the retry fires the same fire time.
ALTER TABLE nexjobs.schedules
    ADD COLUMN IF NOT EXISTS failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    ADD COLUMN IF NOT EXISTS retry_at timestamptz;

-- Before 027 a schedule that could not be computed was parked at next_fire_at = 'infinity' for good; recompute
-- them (a definition still bad gets last_error and the backoff).
UPDATE nexjobs.schedules SET next_fire_at = NULL WHERE next_fire_at = 'infinity';

CREATE OR REPLACE FUNCTION nexjobs.schedules_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Reject an unknown time zone at write time: AT TIME ZONE raises for names PostgreSQL does not know.
    PERFORM now() AT TIME ZONE NEW.timezone;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
        IF NEW.cron IS DISTINCT FROM OLD.cron OR NEW.timezone IS DISTINCT FROM OLD.timezone
           OR NEW.enabled IS DISTINCT FROM OLD.enabled THEN
            -- Redefined, enabled or disabled: computed again from scratch at the next tick.
            NEW.next_fire_at := NULL;
            NEW.last_error := NULL;
            NEW.failures := 0;
            NEW.retry_at := NULL;
        ELSIF NEW.kind IS DISTINCT FROM OLD.kind OR NEW.args IS DISTINCT FROM OLD.args
              OR NEW.queue IS DISTINCT FROM OLD.queue OR NEW.priority IS DISTINCT FROM OLD.priority
              OR NEW.max_attempts IS DISTINCT FROM OLD.max_attempts THEN
            -- A changed job definition (say, fixed args) is tried at the next tick instead of after the backoff;
            -- last_error stays until it fires.
            NEW.retry_at := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
