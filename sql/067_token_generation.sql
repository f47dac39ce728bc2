-- Reauthorization races (issue 14 review): a connection's token generation, so a token write computed from one
-- set of tokens cannot overwrite or condemn a newer set.
-- `token_generation` counts token writes: every store of new tokens (`ConnectionStore.saveTokens`, a refresh's
-- conditional save, `reauthorize`) sets it to generation + 1, and the trigger below bumps it when the tokens are
-- wiped (sql/030's needs_reauth trigger, disconnects, erasure). A key rotation reseals the same tokens and leaves it
-- alone. A refresh (the token refresher, a sync's session) stores its result only while the generation is the one
-- it started from, and a grant error marks the connection `needs_reauth` only for the generation whose tokens
-- failed: a reauthorization committed meanwhile wins. Idempotent: safe to apply again.
ALTER TABLE nexcomet.ad_connections ADD COLUMN IF NOT EXISTS token_generation bigint NOT NULL DEFAULT 0;

-- Named after ad_connections_forget_dead_grant so it fires after it (BEFORE triggers run in name order) and sees
-- that trigger's wipe.
CREATE OR REPLACE FUNCTION nexcomet.ad_connections_token_wipe_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.token_generation := OLD.token_generation + 1;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS ad_connections_token_wipe_generation ON nexcomet.ad_connections;
CREATE TRIGGER ad_connections_token_wipe_generation BEFORE UPDATE ON nexcomet.ad_connections
    FOR EACH ROW WHEN (NEW.token_generation = OLD.token_generation
                       AND ((OLD.access_token_ciphertext IS NOT NULL AND NEW.access_token_ciphertext IS NULL)
                            OR (OLD.refresh_token_ciphertext IS NOT NULL AND NEW.refresh_token_ciphertext IS NULL)))
    EXECUTE FUNCTION nexcomet.ad_connections_token_wipe_generation();
