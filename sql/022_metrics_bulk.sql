-- daily_metrics for bulk writes (issue 5's 100,000 rows/s for a fresh window). Measured with 100,000 rows of one
-- account on this machine's PostgreSQL 15 (bench/sync/README.md):
--   * the primary key (platform, ad_account_id, level, entity_id, date) plus the (ad_account_id, date) index cost
--     ~400 ms per 100,000 inserted rows; one key (ad_account_id, date, level, entity_id) costs ~190 ms and serves
--     both the upsert's conflict target and the window range scans, so the second index goes. platform is not in
--     the key: an ad account belongs to one platform.
--   * the row-level foreign key to ad_accounts runs one lookup per inserted row (~300 ms per 100,000 rows, the same
--     account every time). It is replaced by statement-level triggers with the same guarantees: every statement
--     that inserts or updates metrics checks and KEY SHARE-locks the distinct accounts it names once (as the
--     foreign key does per row, so a concurrent account delete waits or the write fails with SQLSTATE 23503), and
--     deleting an account deletes its metrics (ON DELETE CASCADE).
-- Idempotent: safe to apply again.

ALTER TABLE nexcomet.daily_metrics DROP CONSTRAINT IF EXISTS daily_metrics_ad_account_id_fkey;
DROP INDEX IF EXISTS nexcomet.daily_metrics_account_date_idx;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conname = 'daily_metrics_pkey' AND conrelid = 'nexcomet.daily_metrics'::regclass
                      AND pg_get_constraintdef(oid) = 'PRIMARY KEY (ad_account_id, date, level, entity_id)') THEN
        ALTER TABLE nexcomet.daily_metrics DROP CONSTRAINT IF EXISTS daily_metrics_pkey;
        ALTER TABLE nexcomet.daily_metrics ADD CONSTRAINT daily_metrics_pkey
            PRIMARY KEY (ad_account_id, date, level, entity_id);
    END IF;
END $$;

-- The foreign key, once per statement: every account named by the new rows must exist, and stays locked
-- (FOR KEY SHARE) until the writer commits, so it cannot be deleted under rows that name it.
CREATE OR REPLACE FUNCTION nexcomet.daily_metrics_check_accounts() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    PERFORM 1 FROM nexcomet.ad_accounts a
     WHERE a.id IN (SELECT DISTINCT n.ad_account_id FROM new_rows n)
       FOR KEY SHARE OF a;
    SELECT n.ad_account_id INTO missing
      FROM (SELECT DISTINCT ad_account_id FROM new_rows) n
     WHERE NOT EXISTS (SELECT 1 FROM nexcomet.ad_accounts a WHERE a.id = n.ad_account_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('daily_metrics names ad account %s, which does not exist', missing),
            TABLE = 'daily_metrics', SCHEMA = 'nexcomet';
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS daily_metrics_accounts_insert ON nexcomet.daily_metrics;
CREATE TRIGGER daily_metrics_accounts_insert
    AFTER INSERT ON nexcomet.daily_metrics REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nexcomet.daily_metrics_check_accounts();
DROP TRIGGER IF EXISTS daily_metrics_accounts_update ON nexcomet.daily_metrics;
CREATE TRIGGER daily_metrics_accounts_update
    AFTER UPDATE ON nexcomet.daily_metrics REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nexcomet.daily_metrics_check_accounts();

-- ON DELETE CASCADE, once per statement (also when the delete itself cascades from a connection or organization).
CREATE OR REPLACE FUNCTION nexcomet.ad_accounts_delete_metrics() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM nexcomet.daily_metrics m WHERE m.ad_account_id IN (SELECT o.id FROM old_rows o);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS ad_accounts_delete_metrics ON nexcomet.ad_accounts;
CREATE TRIGGER ad_accounts_delete_metrics
    AFTER DELETE ON nexcomet.ad_accounts REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION nexcomet.ad_accounts_delete_metrics();

-- An account id never changes while metrics name it (the foreign key's ON UPDATE NO ACTION).
CREATE OR REPLACE FUNCTION nexcomet.ad_accounts_keep_id() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM nexcomet.daily_metrics m WHERE m.ad_account_id = OLD.id) THEN
        RAISE foreign_key_violation USING
            MESSAGE = format('ad account %s has daily metrics; its id cannot change', OLD.id);
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS ad_accounts_keep_id ON nexcomet.ad_accounts;
CREATE TRIGGER ad_accounts_keep_id
    BEFORE UPDATE OF id ON nexcomet.ad_accounts
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION nexcomet.ad_accounts_keep_id();
