-- Token refresh lease (issue 10): a refresher claims a connection's refresh for a bounded time instead of holding a
-- FOR UPDATE row lock across the OAuth HTTP call. Owner is a random id per refresh attempt; an expired lease may
-- be taken over (its holder crashed or hung).
ALTER TABLE nexcomet.ad_connections
    ADD COLUMN IF NOT EXISTS token_refresh_lease_owner text,
    ADD COLUMN IF NOT EXISTS token_refresh_lease_until timestamptz;
