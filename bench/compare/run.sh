#!/bin/sh
# NexJobs side by side with PgQueuer 1.6.x and Procrastinate 3.x on one PostgreSQL server (issue 6):
# configuration sweep, burn-down (median of 3, systems alternating), idle latency, kill -9 crash test, pgbench.
# Writes bench/results/compare-<date>.md. Usage: bench/compare/run.sh [extra compare.py options]
# Uses DATABASE_URL (an admin URL; databases bench_* are created) or starts its own cluster on BENCH_PORT (55433).
set -eu
cd "$(dirname "$0")/../.."
if [ ! -x bench/.venv/bin/python ]; then
    python3 -m venv bench/.venv
fi
bench/.venv/bin/pip install -q "pgqueuer>=1.6,<1.7" "procrastinate>=3,<4" asyncpg uvloop "psycopg[binary]"
. bench/compare/cluster.sh
bench/.venv/bin/python bench/compare/compare.py --title "NexJobs, PgQueuer and Procrastinate side by side" \
    --command "bench/compare/run.sh $*" --out "bench/results/compare-$(date -u +%F).md" "$@"
