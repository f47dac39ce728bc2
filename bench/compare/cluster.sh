# Sourced by bench/queue/run.sh and bench/compare/run.sh: builds the release binaries and provides DATABASE_URL,
# starting a throwaway durable cluster (deploy/pg-cluster.sh) unless DATABASE_URL is already set.
# The cluster lives under /tmp (the postgres user must be able to reach it) and is stopped on exit.
BENCH_PORT=${BENCH_PORT:-55433}
BENCH_PGDATA=${BENCH_PGDATA:-/tmp/nexjobs-bench-pg-$BENCH_PORT}
echo "building release binaries..." >&2
swift build -c release --product nexjobs >/dev/null
swift build -c release --product queue-bench >/dev/null
if [ -z "${DATABASE_URL:-}" ]; then
    DATABASE_URL=$(deploy/pg-cluster.sh start "$BENCH_PGDATA" "$BENCH_PORT")
    trap 'deploy/pg-cluster.sh stop "$BENCH_PGDATA"' EXIT
    trap 'exit 130' INT TERM
fi
export DATABASE_URL
