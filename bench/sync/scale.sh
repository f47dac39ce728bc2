#!/usr/bin/env bash
# Scale run (issue 14): N connections synced by real worker processes after a "deploy", per-app QPS enforced by
# the sandbox and paced by the client. Results: bench/sync/README.md, "Scale run".
#
# Usage: bench/sync/scale.sh [ADMIN_URL] [CONNECTIONS=10000] [KEY=VALUE ...]
#   ADMIN_URL (or $NEXJOBS_BENCH_DATABASE_URL, or $NEXJOBS_TEST_DATABASE_URL): a PostgreSQL URL whose user may
#   create databases; a throwaway database bench_scale_<random> is created, migrated and dropped.
#   KEY=VALUE: latency_ms=20 workers=4 concurrency=8 tiktok_app_qps=30 snap_app_qps=0 daily_sample=500
#   deadline_minutes=150 seed=9 platform_cap=0 (N > 0: per-platform account-sync queues, each capped at N per
#   worker) first_sync_backlog=1000 (0: no admission limit); see bench/sync-scale/main.swift.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADMIN_URL="${1:-${NEXJOBS_BENCH_DATABASE_URL:-${NEXJOBS_TEST_DATABASE_URL:-}}}"
[[ -n "$ADMIN_URL" ]] || { echo "usage: $0 ADMIN_URL [CONNECTIONS] [KEY=VALUE ...]" >&2; exit 2; }
CONNECTIONS="${2:-10000}"
shift $(( $# < 2 ? $# : 2 ))
swift build -c release --product sync-scale >/dev/null
swift build -c release --product nexjobs >/dev/null
DB="bench_scale_$RANDOM$RANDOM"
export DATABASE_URL="${ADMIN_URL%/*}/$DB"
psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB"
trap 'psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null' EXIT
NEXJOBS_SQL_DIR="$PWD/sql" .build/release/nexjobs migrate >/dev/null
.build/release/sync-scale "$DATABASE_URL" "$PWD/.build/release/nexjobs" "$CONNECTIONS" "$@"
