#!/bin/sh
# Requests/s of the HTTP module's server on loopback, measured with wrk (Debian package `wrk`).
# Usage: bench/http/run.sh [duration=10s] [connections=64] [threads=2]
set -eu
cd "$(dirname "$0")/../.."
DURATION=${1:-10s}
CONNECTIONS=${2:-64}
THREADS=${3:-2}
PORT=${PORT:-8089}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
swift build -c release --product http-bench >/dev/null
.build/release/http-bench --port "$PORT" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
# Wait for the port (bounded), not a fixed sleep.
i=0
until curl -sf "http://127.0.0.1:$PORT/hello" >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 100 ] || { echo "server did not start" >&2; exit 1; }
    sleep 0.1
done
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency http://127.0.0.1:$PORT/hello"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$PORT/hello"
