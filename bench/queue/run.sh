#!/bin/sh
# NexJobs queue benchmark: burn-down (bulk enqueue, drain with W worker processes, median of 3) and idle
# enqueue-to-start latency, over a sweep of worker configurations. Writes bench/results/queue-<date>.md.
# Usage: bench/queue/run.sh [extra compare.py options, e.g. --n 50000 --reps 3 --nexjobs-configs 2x500x500]
# Uses DATABASE_URL (an admin URL; databases bench_* are created) or starts its own cluster on BENCH_PORT (55433).
set -eu
cd "$(dirname "$0")/../.."
. bench/compare/cluster.sh
python3 bench/compare/compare.py --systems nexjobs --no-crash --pgbench-seconds 0 \
    --title "NexJobs queue benchmark" --command "bench/queue/run.sh $*" \
    --nexjobs-configs "1x200x200,1x500x500,1x1000x1000,2x200x200,2x500x500,2x1000x500,2x1000x1000,3x300x300,3x500x500" \
    --out "bench/results/queue-$(date -u +%F).md" "$@"
