#!/usr/bin/env bash
# Scheduler tick benchmark: time one leader tick (`nexjobs scheduler --once`) that enqueues sync_connection for
# 1,000 and for 100,000 due connections, with 100,000 connections in the table.
#
# Usage: bench/scheduler/run.sh [ADMIN_URL]
#   ADMIN_URL (or $NEXJOBS_BENCH_DATABASE_URL, or $NEXJOBS_TEST_DATABASE_URL): a PostgreSQL URL whose user may
#   create databases. A throwaway database bench_scheduler_<random> is created and dropped.
#   REPEAT=3 runs each case three times (fresh jobs table each time) and prints every figure.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADMIN_URL="${1:-${NEXJOBS_BENCH_DATABASE_URL:-${NEXJOBS_TEST_DATABASE_URL:-}}}"
if [[ -z "$ADMIN_URL" ]]; then
    echo "usage: $0 ADMIN_URL   (e.g. postgres://postgres@127.0.0.1:54329/postgres)" >&2
    exit 2
fi
REPEAT="${REPEAT:-3}"
TOTAL=100000

swift build -c release --product nexjobs >/dev/null
BIN=.build/release/nexjobs

DB="bench_scheduler_$RANDOM$RANDOM"
BASE="${ADMIN_URL%/*}"
export DATABASE_URL="$BASE/$DB"
psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB"
trap 'psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null' EXIT

NEXJOBS_SQL_DIR="$PWD/sql" "$BIN" migrate >/dev/null
psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" <<SQL
-- The benchmark measures due work only: the cron schedules stay out of the way.
UPDATE nexjobs.schedules SET enabled = false;
INSERT INTO nexcomet.organizations (name, plan)
SELECT 'org ' || g, (ARRAY['free', 'pro', 'enterprise'])[1 + g % 3] FROM generate_series(1, 2000) g;
-- Connections synced before (regular syncs; first syncs are admitted by backlog, sql/068, which would cap a tick).
INSERT INTO nexcomet.ad_connections (organization_id, platform, next_sync_at, access_token_expires_at, last_synced_at)
SELECT 1 + g % 2000, CASE WHEN g % 2 = 0 THEN 'tiktok' ELSE 'snapchat' END,
       now() + interval '1 hour', now() + interval '1 day', now() - interval '1 hour'
  FROM generate_series(1, $TOTAL) g;
-- On top: 40 restricted organizations with 2,000 connections, always due (the worst case: the due scan passes
-- over them every tick) and never scheduled.
INSERT INTO nexcomet.organizations (name, processing_restricted) SELECT 'restricted ' || g, true
  FROM generate_series(1, 40) g;
INSERT INTO nexcomet.ad_connections (organization_id, platform, next_sync_at)
SELECT 2001 + g % 40, 'tiktok', now() - interval '1 day' FROM generate_series(1, 2000) g;
VACUUM ANALYZE nexcomet.ad_connections;
VACUUM ANALYZE nexcomet.organizations;
SQL

# Make `n` schedulable connections due, with an empty queue, then run one tick.
tick() {
    local n="$1"
    psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" >/dev/null <<SQL
TRUNCATE nexjobs.jobs;
UPDATE nexcomet.ad_connections SET next_sync_at = CASE WHEN id <= $n THEN now() - interval '1 second'
                                                     ELSE now() + interval '1 hour' END
 WHERE id <= $TOTAL;
VACUUM ANALYZE nexcomet.ad_connections;
VACUUM ANALYZE nexjobs.jobs;
SQL
    local out
    out=$("$BIN" scheduler --once --json 2>/dev/null)
    local enqueued
    enqueued=$(psql -qtA "$DATABASE_URL" -c "SELECT count(*) FROM nexjobs.jobs WHERE kind = 'sync_connection'")
    echo "due=$n enqueued=$enqueued $out"
}

echo "connections in table: $TOTAL schedulable + 2000 of restricted organizations (due, never scheduled)"
for n in 1000 $TOTAL; do
    for _ in $(seq "$REPEAT"); do tick "$n"; done
done
