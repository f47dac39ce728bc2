-- Replay store of `POST /webhooks/reauthorized` (ReauthorizeWebhook.swift). A signed request stays valid for the
-- 5 minutes of its timestamp, so a captured one could be sent again and restore the tokens it carried. Each accepted
-- delivery is recorded here, keyed by the SHA-256 of its signed message `<timestamp>.<body>`, in the same
-- transaction as the token change: a refused or failed request leaves no row (it may be retried), an accepted one
-- cannot be applied twice. `expires_at` is the end of the timestamp's validity; rows a window past it are deleted by
-- the next delivery (the table stays small). `/webhooks/resync` records nothing: it is idempotent.

CREATE SCHEMA IF NOT EXISTS nexjobs;

CREATE TABLE IF NOT EXISTS nexjobs.webhook_deliveries (
    webhook     text NOT NULL CHECK (webhook ~ '^[a-z_]{1,32}$'),
    digest      bytea NOT NULL CHECK (length(digest) = 32),
    expires_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (webhook, digest)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_expires_idx ON nexjobs.webhook_deliveries (expires_at);
