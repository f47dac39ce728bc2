#!/usr/bin/env bash
# Drain through PgBouncer (transaction pooling, deploy/pgbouncer.sh) next to a direct connection: N recorded no-op
# jobs inserted in bulk, drained by W worker processes (release build), rounds alternating direct / pgbouncer.
# Drain rate from server timestamps: N / (last finished_at - first attempted_at). Exactly-once is checked each run.
# Usage: bench/pgbouncer/run.sh [N=20000] [WORKERS=2] [CONCURRENCY=500] [ROUNDS=3]
# Uses its own throwaway cluster (BENCH_PORT, default 55433) unless DATABASE_URL is set; writes
# bench/results/pgbouncer-<date>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-20000}; workers=${2:-2}; conc=${3:-500}; rounds=${4:-3}
. bench/compare/cluster.sh
export PGGSSENCMODE=disable
admin=$DATABASE_URL
base=${admin%/*}
psql -XqtA "$admin" -c "DROP DATABASE IF EXISTS bench_pgbouncer" -c "CREATE DATABASE bench_pgbouncer"
direct=$base/bench_pgbouncer
hostport=${base##*@}; host=${hostport%:*}; port=${hostport##*:}; user=${base#postgres://}; user=${user%@*}
pgb_dir=$(mktemp -d /tmp/nexjobs-bench-pgb.XXXXXX); chmod 755 "$pgb_dir"
pgb_port=${BENCH_PGBOUNCER_PORT:-55434}
bash deploy/pgbouncer.sh start "$pgb_dir" "$pgb_port" "$host" "$port"
trap 'bash deploy/pgbouncer.sh stop "$pgb_dir"; rm -rf "$pgb_dir"' EXIT
pooled=postgres://$user@127.0.0.1:$pgb_port/bench_pgbouncer
DATABASE_URL=$direct .build/release/nexjobs migrate >/dev/null
out=bench/results/pgbouncer-$(date -u +%F).md
rows=""
for round in $(seq 1 "$rounds"); do
  for mode in direct pgbouncer; do
    url=$direct; [ "$mode" = pgbouncer ] && url=$pooled
    psql -Xq "$direct" -c "TRUNCATE nexjobs.jobs, nexjobs.noop_log; DELETE FROM nexjobs.workers" \
      -c "INSERT INTO nexjobs.jobs (kind, queue, args) SELECT 'noop', 'bench', '{\"record\": true}' FROM generate_series(1, $n)" \
      -c "VACUUM ANALYZE nexjobs.jobs"
    pids=()
    for _ in $(seq 1 "$workers"); do
      DATABASE_URL=$url NEXJOBS_DIRECT_DATABASE_URL=$direct NEXJOBS_LOG_LEVEL=warning .build/release/nexjobs worker \
        --queues bench --concurrency "$conc" --claim-batch "$conc" --no-maintenance >/dev/null 2>&1 &
      pids+=($!)
    done
    deadline=$((SECONDS + 600))
    while [ "$(psql -XqtA "$direct" -c "SELECT count(*) FROM nexjobs.jobs WHERE state <> 'completed'")" != 0 ]; do
      [ $SECONDS -lt $deadline ] || { echo "drain did not finish in 600 s" >&2; kill -TERM "${pids[@]}"; exit 1; }
      sleep 0.2
    done
    kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
    row=$(psql -XqtA "$direct" -c "
      SELECT round($n / extract(epoch FROM max(finished_at) - min(attempted_at)))::bigint,
             (SELECT count(*) FROM nexjobs.noop_log), (SELECT count(DISTINCT job_id) FROM nexjobs.noop_log)
        FROM nexjobs.jobs")
    IFS='|' read -r rate execs distinct <<<"$row"
    [ "$execs" = "$n" ] && [ "$distinct" = "$n" ] || { echo "$mode: $execs executions of $distinct jobs, expected $n" >&2; exit 1; }
    echo "round $round $mode: $rate jobs/s"
    rows+="| $round | $mode | $rate | $execs |"$'\n'
  done
done
{
  echo "# Drain through PgBouncer (transaction mode) vs direct"
  echo
  echo "\`bench/pgbouncer/run.sh $n $workers $conc $rounds\` on $(date -u +%F), git $(git rev-parse --short HEAD), $(pgbouncer --version | head -n 1)."
  echo "$n recorded no-op jobs, $workers worker processes x concurrency $conc (claim batch $conc), rounds alternating."
  echo "LISTEN uses the direct URL in both modes (NEXJOBS_DIRECT_DATABASE_URL). Each run executed every job exactly once."
  echo "The machine is shared (2 cores, other builds running): compare rounds, not absolute numbers."
  echo
  echo "| round | connection | drain jobs/s | executions |"
  echo "|---:|---|---:|---:|"
  printf "%s" "$rows"
} > "$out"
echo "wrote $out"
