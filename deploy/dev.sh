#!/usr/bin/env bash
# The local stack: PostgreSQL, the sandbox ad APIs, a scheduler and two workers. Ctrl-C stops everything.
# State lives under ./.local (delete it to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mkdir -p .local
chmod 755 .local
pg_port=${NEXJOBS_DEV_PG_PORT:-54400}
sandbox_port=${NEXJOBS_DEV_SANDBOX_PORT:-54401}

echo "building (release)..."
swift build -c release --product nexjobs 2>&1 | tail -n 1
bin=$root/.build/release/nexjobs

admin=$(bash deploy/pg-cluster.sh start "$root/.local/pg" "$pg_port")
export DATABASE_URL=$admin
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash deploy/pg-cluster.sh stop "$root/.local/pg"
}
trap cleanup INT TERM EXIT

"$bin" migrate
"$bin" sandbox --port "$sandbox_port" > .local/sandbox.log 2>&1 & pids+=($!)
"$bin" scheduler > .local/scheduler.log 2>&1 & pids+=($!)
for i in 1 2; do "$bin" worker --concurrency 20 > ".local/worker-$i.log" 2>&1 & pids+=($!); done
"$bin" enqueue noop --args '{"sleep_ms": 100}' > /dev/null
echo "DATABASE_URL=$DATABASE_URL"
echo "sandbox: http://127.0.0.1:$sandbox_port   logs: .local/*.log   Ctrl-C stops everything"
while sleep 10; do "$bin" stats; done
