-- NexJobs scheduler: leader election, cron schedules with exactly-once fire records, seeded defaults.
-- Idempotent: every object is created with IF NOT EXISTS / CREATE OR REPLACE, seeds use ON CONFLICT DO NOTHING.

-- One row per elected role (the scheduler uses name = 'scheduler'). Works behind PgBouncer transaction pooling:
-- acquiring and extending a term is one autocommit statement, no session state or advisory lock.
CREATE TABLE IF NOT EXISTS nexjobs.leader (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    term_until  timestamptz NOT NULL,
    -- When the current holder's unbroken run of terms began (an extension keeps it, a takeover resets it).
    elected_at  timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now()
);

-- Acquire or extend the term of `role` for `candidate`: one atomic statement. The holder extends its own term;
-- anyone takes a term that has expired (by the database clock). Returns the new term end, or NULL when someone
-- else holds a live term.
CREATE OR REPLACE FUNCTION nexjobs.leader_acquire(role text, candidate text, term interval)
RETURNS timestamptz LANGUAGE sql AS $$
    INSERT INTO nexjobs.leader AS l (name, holder, term_until, elected_at, renewed_at)
    VALUES (role, candidate, now() + term, now(), now())
    ON CONFLICT (name) DO UPDATE
       SET holder = excluded.holder,
           term_until = excluded.term_until,
           renewed_at = now(),
           elected_at = CASE WHEN l.holder = excluded.holder AND l.term_until >= now()
                             THEN l.elected_at ELSE now() END
     WHERE l.holder = excluded.holder OR l.term_until < now()
    RETURNING l.term_until
$$;

-- Give up the term at once (graceful shutdown) so a standby takes over on its next attempt. Returns whether
-- `candidate` held it.
CREATE OR REPLACE FUNCTION nexjobs.leader_release(role text, candidate text)
RETURNS boolean LANGUAGE sql AS $$
    WITH r AS (
        UPDATE nexjobs.leader l SET term_until = now(), renewed_at = now()
         WHERE l.name = role AND l.holder = candidate AND l.term_until > now()
        RETURNING 1
    )
    SELECT count(*) > 0 FROM r
$$;

-- Cron schedules. `cron` is a 5-field expression (lists, ranges, steps, names, @daily-style macros), or
-- `@every <duration>` (e.g. `@every 30s`, `@every 2h`): fire times are the multiples of the interval since the
-- Unix epoch, so every leader computes the same ones. `timezone` is an IANA name; cron fields are read in it.
-- Operators manage rows with the CLI (`nexjobs schedules ...`) or plain SQL:
--   INSERT INTO nexjobs.schedules (name, cron, timezone, kind, args) VALUES ('report', '0 6 * * 1', 'Europe/Paris',
--          'weekly_report', '{}');
--   UPDATE nexjobs.schedules SET enabled = false WHERE name = 'report';
--   UPDATE nexjobs.schedules SET cron = '0 4 * * *' WHERE name = 'retention_purge';
--   DELETE FROM nexjobs.schedules WHERE name = 'report';
-- The scheduler computes next_fire_at; a change of cron, timezone or enabled clears it (trigger below), so the
-- next tick recomputes it from the new definition.
CREATE TABLE IF NOT EXISTS nexjobs.schedules (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    cron          text NOT NULL CHECK (length(cron) BETWEEN 1 AND 200),
    timezone      text NOT NULL DEFAULT 'UTC',
    kind          text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.:-]{0,127}$'),
    args          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(args) = 'object'),
    queue         text NOT NULL DEFAULT 'default' CHECK (queue ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    priority      smallint NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 20 CHECK (max_attempts >= 1),
    enabled       boolean NOT NULL DEFAULT true,
    last_fire_at  timestamptz,
    next_fire_at  timestamptz,
    -- Set when the scheduler cannot compute fire times (bad expression); cleared by a fix.
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION nexjobs.schedules_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Reject an unknown time zone at write time: AT TIME ZONE raises for names PostgreSQL does not know.
    PERFORM now() AT TIME ZONE NEW.timezone;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
        IF NEW.cron IS DISTINCT FROM OLD.cron OR NEW.timezone IS DISTINCT FROM OLD.timezone
           OR NEW.enabled IS DISTINCT FROM OLD.enabled THEN
            NEW.next_fire_at := NULL;
            NEW.last_error := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS schedules_touch ON nexjobs.schedules;
CREATE TRIGGER schedules_touch BEFORE INSERT OR UPDATE ON nexjobs.schedules
    FOR EACH ROW EXECUTE FUNCTION nexjobs.schedules_touch();

-- The scheduler's tick reads only schedules that are due or still need a next fire time.
CREATE INDEX IF NOT EXISTS schedules_due_idx ON nexjobs.schedules (next_fire_at) WHERE enabled;

-- One row per fire: the primary key makes each (schedule, fire time) fire exactly once, whichever leader fires it.
-- The fire record and its job are inserted in one transaction.
CREATE TABLE IF NOT EXISTS nexjobs.schedule_fires (
    name      text NOT NULL REFERENCES nexjobs.schedules (name) ON DELETE CASCADE ON UPDATE CASCADE,
    fire_at   timestamptz NOT NULL,
    job_id    bigint,
    holder    text,
    fired_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, fire_at)
);
CREATE INDEX IF NOT EXISTS schedule_fires_fired_idx ON nexjobs.schedule_fires (fired_at);

-- Defaults. Kinds starting with `nexjobs.` are maintenance the leader runs itself at each fire (no job is
-- enqueued; the fire record keeps job_id NULL): `nexjobs.rescue` (args: batch_size) hands expired leases back,
-- `nexjobs.prune` (args: completed_retention, failed_retention, fires_retention, batch_size) deletes finished
-- jobs and old fire records in batches. Operators change their cadence like any schedule's.
-- `retention_purge` is seeded disabled: its job handler is not built yet (see docs/STATUS.md); enabling it before
-- then would fail one job a day as an unknown kind.
INSERT INTO nexjobs.schedules (name, cron, timezone, kind, args, queue, priority, enabled)
VALUES ('maintenance.rescue', '@every 5s', 'UTC', 'nexjobs.rescue', '{"batch_size": 1000}', 'maintenance', 0, true),
       ('maintenance.prune', '@every 1m', 'UTC', 'nexjobs.prune',
        '{"completed_retention": "24 hours", "failed_retention": "14 days", "fires_retention": "30 days", "batch_size": 5000}',
        'maintenance', 0, true),
       ('retention_purge', '0 3 * * *', 'UTC', 'retention_purge', '{}', 'maintenance', 10, false)
ON CONFLICT (name) DO NOTHING;
