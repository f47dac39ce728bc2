#!/usr/bin/env bash
# Sync benchmark: bulk metrics upsert vs row-by-row INSERT, and end-to-end ad accounts per minute against the
# in-process sandbox with API latency injected.
#
# Usage: bench/sync/run.sh [ADMIN_URL] [ROWS=100000] [LATENCY_MS=100]
#   ADMIN_URL (or $NEXJOBS_BENCH_DATABASE_URL, or $NEXJOBS_TEST_DATABASE_URL): a PostgreSQL URL whose user may
#   create databases. A throwaway database bench_sync_<random> is created, migrated and dropped.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADMIN_URL="${1:-${NEXJOBS_BENCH_DATABASE_URL:-${NEXJOBS_TEST_DATABASE_URL:-}}}"
[[ -n "$ADMIN_URL" ]] || { echo "usage: $0 ADMIN_URL [ROWS] [LATENCY_MS]" >&2; exit 2; }
swift build -c release --product sync-bench >/dev/null
swift build -c release --product nexjobs >/dev/null
DB="bench_sync_$RANDOM$RANDOM"
export DATABASE_URL="${ADMIN_URL%/*}/$DB"
psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB"
trap 'psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null' EXIT
NEXJOBS_SQL_DIR="$PWD/sql" .build/release/nexjobs migrate >/dev/null
.build/release/sync-bench "$DATABASE_URL" "${2:-100000}" "${3:-100}"
