#!/usr/bin/env bash
# The local stack, in one command: bash deploy/dev.sh
#
# Starts a PostgreSQL cluster under ./.local/pg, builds nexjobs, applies the migrations, serves the fake TikTok and
# Snapchat APIs (`nexjobs sandbox`), creates demo organizations whose connections hold sandbox tokens (obtained
# through the sandbox's OAuth endpoints and piped to `nexjobs connections add` on stdin, sealed with a dev key ring
# kept in ./.local/dev-token-keys), then runs a scheduler, two workers pointed at the sandbox and `nexjobs serve`
# (console, /metrics), prints the console's URL with a dev login and the metrics token, and then prints what has
# synced whenever it changes (checked every 10 seconds). Ctrl-C stops everything it started (the cluster too; its
# data stays in ./.local/pg).
#
# Settings (environment): NEXJOBS_DEV_PG_PORT (54330), NEXJOBS_DEV_SANDBOX_PORT (8787), NEXJOBS_DEV_SERVE_PORT
# (8080), NEXJOBS_DEV_BUILD (debug | release; default debug, quicker to build), NEXJOBS_DEV_CONNECTIONS (3 per
# platform).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
state=$root/.local
pg_port=${NEXJOBS_DEV_PG_PORT:-54330}
sandbox_port=${NEXJOBS_DEV_SANDBOX_PORT:-8787}
serve_port=${NEXJOBS_DEV_SERVE_PORT:-8080}
build=${NEXJOBS_DEV_BUILD:-debug}
per_platform=${NEXJOBS_DEV_CONNECTIONS:-3}
mkdir -p "$state/logs"
chmod 755 "$state"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "dev: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  bash deploy/pg-cluster.sh stop "$state/pg" || true
  echo "dev: stopped (data kept in .local/pg; logs in .local/logs)"
  exit 0
}
trap cleanup INT TERM EXIT

for tool in swift psql curl; do
  command -v "$tool" >/dev/null || { echo "dev: $tool is required" >&2; exit 1; }
done

echo "dev: starting PostgreSQL in .local/pg on port $pg_port"
admin_url=$(bash deploy/pg-cluster.sh start "$state/pg" "$pg_port")
psql "$admin_url" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'nexcomet'" | grep -q 1 \
  || psql "$admin_url" -qc "CREATE DATABASE nexcomet"
export DATABASE_URL=${admin_url%/postgres}/nexcomet

echo "dev: building nexjobs ($build; the first build takes a few minutes)"
swift build -c "$build" --product nexjobs 2>&1 | tail -n 1
bin=$(swift build -c "$build" --show-bin-path)/nexjobs

# A dev-only key ring, generated once and never committed (.local is ignored).
keys_file=$state/dev-token-keys
if [ ! -s "$keys_file" ]; then
  (umask 077; echo "dev1:$(head -c 32 /dev/urandom | base64)" > "$keys_file")
fi
export NEXJOBS_TOKEN_KEYS
NEXJOBS_TOKEN_KEYS=$(cat "$keys_file")
# Dev-only console login and metrics token, generated once (.local is ignored, never committed).
for f in dev-console-token dev-metrics-token; do
  [ -s "$state/$f" ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$state/$f")
done
export NEXJOBS_CONSOLE_TOKENS NEXJOBS_METRICS_TOKEN
NEXJOBS_CONSOLE_TOKENS=$(cat "$state/dev-console-token")
NEXJOBS_METRICS_TOKEN=$(cat "$state/dev-metrics-token")

"$bin" migrate >/dev/null
echo "dev: migrations applied"

base=http://127.0.0.1:$sandbox_port
"$bin" sandbox --port "$sandbox_port" --tiktok-connections "$per_platform" --snap-connections "$per_platform" \
  >"$state/logs/sandbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "$base/_sandbox/clock" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "$base/_sandbox/clock" >/dev/null || { echo "dev: the sandbox did not start (see .local/logs/sandbox.log)" >&2; exit 1; }
echo "dev: sandbox on $base"

export NEXJOBS_TIKTOK_APP_ID=dev-app NEXJOBS_TIKTOK_SECRET=dev-tiktok-secret
export NEXJOBS_TIKTOK_BASE_URL=$base/open_api/v1.3/
export NEXJOBS_SNAP_CLIENT_ID=dev-client NEXJOBS_SNAP_CLIENT_SECRET=dev-snap-secret
export NEXJOBS_SNAP_API_BASE_URL=$base/v1/ NEXJOBS_SNAP_TOKEN_URL=$base/login/oauth2/access_token
export NEXJOBS_SYNC_RATE_LIMIT_SNOOZE=2
# Each platform's syncs in its own queue, at most 3 of each running per worker (README, "Claim"): syncs waiting on
# one platform's app quota never hold all 8 slots.
export NEXJOBS_SYNC_QUEUE_TIKTOK=sync.tiktok NEXJOBS_SYNC_QUEUE_SNAPCHAT=sync.snapchat

# Demo data is recreated on every start: a fresh sandbox process does not know the previous run's tokens.
psql "$DATABASE_URL" -qc "DELETE FROM nexcomet.organizations WHERE name LIKE 'Demo %'"
org_free=$("$bin" orgs add "Demo Starter" --plan free)
org_pro=$("$bin" orgs add "Demo Agency" --plan pro)
for i in $(seq 0 $((per_platform - 1))); do
  org=$([ $((i % 2)) = 0 ] && echo "$org_pro" || echo "$org_free")
  # The OAuth responses go straight from curl into `connections add` on stdin: no token in argv or on screen.
  curl -sf -X POST "${NEXJOBS_TIKTOK_BASE_URL}oauth2/access_token/" -H 'Content-Type: application/json' \
    -d "{\"app_id\":\"$NEXJOBS_TIKTOK_APP_ID\",\"secret\":\"$NEXJOBS_TIKTOK_SECRET\",\"auth_code\":\"tiktok-auth-$i\"}" \
    | "$bin" connections add --org "$org" --platform tiktok >/dev/null
  curl -sf -X POST "$NEXJOBS_SNAP_TOKEN_URL" \
    --data-urlencode grant_type=authorization_code --data-urlencode "client_id=$NEXJOBS_SNAP_CLIENT_ID" \
    --data-urlencode "client_secret=$NEXJOBS_SNAP_CLIENT_SECRET" --data-urlencode "code=snap-auth-$i" \
    | "$bin" connections add --org "$org" --platform snapchat >/dev/null
done
echo "dev: demo organizations $org_pro (pro, 90 days) and $org_free (free, 7 days) with $((2 * per_platform)) connections"
"$bin" connections list

"$bin" scheduler >"$state/logs/scheduler.log" 2>&1 &
pids+=($!)
for n in 1 2; do
  "$bin" worker --concurrency 8 --queues default,sync.tiktok=3,sync.snapchat=3 >"$state/logs/worker-$n.log" 2>&1 &
  pids+=($!)
done
"$bin" serve --listen "127.0.0.1:$serve_port" >"$state/logs/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$serve_port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$serve_port/healthz" >/dev/null || { echo "dev: serve did not start (see .local/logs/serve.log)" >&2; exit 1; }
echo "dev: scheduler, two workers and serve running (logs in .local/logs); Ctrl-C stops everything"
echo "dev: DATABASE_URL=$DATABASE_URL"
echo "dev: console  http://127.0.0.1:$serve_port/  (dev login token: $NEXJOBS_CONSOLE_TOKENS)"
echo "dev: metrics  curl -H 'Authorization: Bearer $NEXJOBS_METRICS_TOKEN' http://127.0.0.1:$serve_port/metrics"

# The summary is printed when it differs from the last one printed.
last=""
while true; do
  summary=$(psql "$DATABASE_URL" -qP pager=off -c "
    SELECT m.platform, count(DISTINCT m.ad_account_id) AS accounts, count(*) AS metric_rows,
           min(m.date) AS first_day, max(m.date) AS last_day, sum(m.conversions) AS conversions
      FROM nexcomet.daily_metrics m GROUP BY m.platform ORDER BY m.platform" \
    -c "SELECT state, count(*) AS jobs FROM nexjobs.jobs WHERE kind LIKE 'sync%' GROUP BY state ORDER BY state" \
    2>&1) || true
  if [ "$summary" != "$last" ]; then
    echo "---- $(date +%H:%M:%S) synced metrics"
    echo "$summary"
    last=$summary
  fi
  sleep 10 &
  wait $! || true
done
