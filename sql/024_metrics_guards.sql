-- Two gaps of 022's statement-level foreign key, found in review (idempotent):
-- 1. Its cascade deletes an account's metrics with the deleting transaction's snapshot. Under READ COMMITTED
--    (every NexJobs job, and PostgreSQL's default) that snapshot is taken after any writer holding the account
--    (KEY SHARE until commit) has committed, so nothing is missed. Under REPEATABLE READ or SERIALIZABLE it is
--    older and could miss rows a writer committed meanwhile, where a real foreign key raises a serialization
--    failure; such deletes are refused with SQLSTATE 0A000 when the account has metrics, and must run in READ
--    COMMITTED.
-- 2. TRUNCATE ... CASCADE of ad_accounts (or of connections or organizations) did not reach daily_metrics, which
--    has no foreign key; a TRUNCATE trigger empties it too.

CREATE OR REPLACE FUNCTION nexcomet.ad_accounts_delete_metrics() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed'
       AND EXISTS (SELECT 1 FROM nexcomet.daily_metrics m WHERE m.ad_account_id IN (SELECT o.id FROM old_rows o)) THEN
        RAISE feature_not_supported USING
            MESSAGE = 'deleting ad accounts that have daily metrics needs READ COMMITTED isolation',
            HINT = 'daily_metrics cascades through a statement-level trigger (sql/022, sql/024)';
    END IF;
    DELETE FROM nexcomet.daily_metrics m WHERE m.ad_account_id IN (SELECT o.id FROM old_rows o);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION nexcomet.ad_accounts_truncate_metrics() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE nexcomet.daily_metrics;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS ad_accounts_truncate_metrics ON nexcomet.ad_accounts;
CREATE TRIGGER ad_accounts_truncate_metrics
    AFTER TRUNCATE ON nexcomet.ad_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION nexcomet.ad_accounts_truncate_metrics();
