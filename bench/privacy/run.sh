#!/usr/bin/env bash
# Privacy export benchmark (issue 12): a `gdpr_export` of one organization holding ROWS daily metric rows
# (default 1,000,000), run by a real `nexjobs worker` process, then `nexjobs privacy download ID > file`.
# Measures wall time and peak RSS (/usr/bin/time -v) of the worker that runs the job and of the download.
#
# Usage: bench/privacy/run.sh [ADMIN_URL] [ROWS=1000000]
#   ADMIN_URL (or $NEXJOBS_BENCH_DATABASE_URL, or $NEXJOBS_TEST_DATABASE_URL): a PostgreSQL URL whose user may
#   create databases. A throwaway database bench_privacy_<random> is created, migrated and dropped.
#   NEXJOBS_BIN: the nexjobs binary (default .build/release/nexjobs, built when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
ADMIN_URL="${1:-${NEXJOBS_BENCH_DATABASE_URL:-${NEXJOBS_TEST_DATABASE_URL:-}}}"
ROWS="${2:-1000000}"
[[ -n "$ADMIN_URL" ]] || { echo "usage: $0 ADMIN_URL [ROWS]" >&2; exit 2; }
[[ "$ROWS" =~ ^[0-9]+$ ]] && (( ROWS >= 1 && ROWS <= 100000000 )) || { echo "ROWS must be in 1...100000000" >&2; exit 2; }
BIN="${NEXJOBS_BIN:-.build/release/nexjobs}"
[[ -x "$BIN" ]] || swift build -c release --product nexjobs >/dev/null
DB="bench_privacy_$RANDOM$RANDOM"
WORK="$(mktemp -d)"
export DATABASE_URL="${ADMIN_URL%/*}/$DB" PGGSSENCMODE="${PGGSSENCMODE:-disable}"
WORKER_PID=""
cleanup() {
    [[ -n "$WORKER_PID" ]] && kill "$WORKER_PID" 2>/dev/null || true
    psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB"
NEXJOBS_SQL_DIR="$PWD/sql" "$BIN" migrate >/dev/null

# One organization, 10 ad accounts; metric i goes to account i % 10, day (i / 10) % 365, ad i / 3650 (unique).
seed_start=$(date +%s.%N)
ORG=$(psql -qAt "$DATABASE_URL" <<SQL
WITH o AS (INSERT INTO nexcomet.organizations (name, plan) VALUES ('bench org', 'enterprise') RETURNING id),
u AS (INSERT INTO nexcomet.users (organization_id, email) SELECT id, 'owner@bench.example' FROM o),
c AS (INSERT INTO nexcomet.ad_connections (organization_id, platform, status, next_sync_at)
      SELECT id, 'tiktok', 'disconnected', NULL FROM o RETURNING id)
INSERT INTO nexcomet.ad_accounts (connection_id, platform, external_id, currency)
SELECT c.id, 'tiktok', 'acct-' || n, 'USD' FROM c, generate_series(0, 9) n;
SELECT id FROM nexcomet.organizations;
SQL
)
psql -q "$DATABASE_URL" <<SQL
INSERT INTO nexcomet.daily_metrics (platform, ad_account_id, level, entity_id, date, currency, spend, impressions,
                                    clicks, conversions, conversion_value, is_final)
SELECT 'tiktok', a.ids[1 + i % 10], 'ad', 'ad-' || (i / 3650), current_date - ((i / 10) % 365)::int, 'USD',
       round((i % 10000) / 100.0, 2), i % 5000, i % 50, i % 7, round((i % 3000) / 10.0, 2), true
  FROM (SELECT array_agg(id ORDER BY id) AS ids FROM nexcomet.ad_accounts) a, generate_series(0, $ROWS - 1) i;
ANALYZE nexcomet.daily_metrics;
SQL
seed_end=$(date +%s.%N)
REQ=$(psql -qAt "$DATABASE_URL" -c "INSERT INTO nexcomet.privacy_requests (organization_id, kind, status, started_at)
                                      VALUES ($ORG, 'export', 'running', now()) RETURNING id")
"$BIN" enqueue gdpr_export --args "{\"request_id\": $REQ}" --max-attempts 1 >/dev/null

# The job's own duration comes from the worker's debug log line "job completed ... duration_s=".
NEXJOBS_LOG_LEVEL=debug /usr/bin/time -v -o "$WORK/worker.time" "$BIN" worker --concurrency 1 --no-maintenance >"$WORK/worker.log" 2>&1 &
TIME_PID=$!
for _ in $(seq 1 50); do WORKER_PID=$(pgrep -P "$TIME_PID" || true); [[ -n "$WORKER_PID" ]] && break; sleep 0.1; done
deadline=$(( $(date +%s) + 3600 ))
while :; do
    status=$(psql -qAt "$DATABASE_URL" -c "SELECT status FROM nexcomet.privacy_requests WHERE id = $REQ")
    [[ "$status" == "completed" || "$status" == "failed" ]] && break
    state=$(psql -qAt "$DATABASE_URL" -c "SELECT state FROM nexjobs.jobs WHERE kind = 'gdpr_export'")
    [[ "$state" == "failed" || "$state" == "discarded" ]] && break
    (( $(date +%s) < deadline )) || { echo "export did not finish within an hour" >&2; exit 1; }
    sleep 0.2
done
kill "$WORKER_PID"; wait "$TIME_PID" || true; WORKER_PID=""
[[ "$status" == "completed" ]] || { echo "export ended $status"; tail -5 "$WORK/worker.log"; exit 1; }
JOB_S=$(grep 'job completed' "$WORK/worker.log" | grep -o 'duration_s=[0-9.]*' | head -1 | cut -d= -f2)
CHUNKS=$(psql -qAt "$DATABASE_URL" -c "SELECT count(*) FROM nexcomet.privacy_export_chunks WHERE request_id = $REQ")

/usr/bin/time -v -o "$WORK/download.time" "$BIN" privacy download "$REQ" >"$WORK/export.ndjson"
LINES=$(wc -l <"$WORK/export.ndjson")
BYTES=$(stat -c %s "$WORK/export.ndjson")
METRIC_LINES=$(grep -c '"category" : "daily_metrics"\|"category": "daily_metrics"' "$WORK/export.ndjson" || true)

rss() { awk -F': ' '/Maximum resident set size/ {printf "%.1f MB", $2 / 1024}' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$1"; }
echo "rows seeded:            $ROWS daily_metrics rows in $(echo "$seed_end - $seed_start" | bc) s"
echo "export job:             $JOB_S s (worker process: wall $(wall "$WORK/worker.time") incl. start/stop, peak RSS $(rss "$WORK/worker.time"))"
echo "export:                 $CHUNKS chunks, $LINES lines ($METRIC_LINES daily_metrics), $BYTES bytes"
echo "download:               wall $(wall "$WORK/download.time"), peak RSS $(rss "$WORK/download.time")"
[[ "$METRIC_LINES" -eq "$ROWS" ]] || { echo "error: $METRIC_LINES metric lines, expected $ROWS" >&2; exit 1; }
