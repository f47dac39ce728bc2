#!/usr/bin/env bash
# Runs the whole test suite against a real PostgreSQL.
# Without NEXJOBS_TEST_DATABASE_URL it starts a throwaway cluster on a free port in a temp folder and removes it
# afterwards. Extra arguments go to `swift test` (e.g. --filter WorkerTests).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NEXJOBS_TEST_DATABASE_URL:-}" ]; then
  tmp=$(mktemp -d /tmp/nexjobs-test-pg.XXXXXX)
  chmod 755 "$tmp"
  # Below the ephemeral port range (32768+), so no outgoing socket holds it.
  port=${NEXJOBS_TEST_PG_PORT:-$((20000 + RANDOM % 12000))}
  trap 'bash deploy/pg-cluster.sh stop "$tmp/data" || true; rm -rf "$tmp"' EXIT
  NEXJOBS_TEST_DATABASE_URL=$(bash deploy/pg-cluster.sh start "$tmp/data" "$port")
  export NEXJOBS_TEST_DATABASE_URL
  echo "test cluster: $NEXJOBS_TEST_DATABASE_URL"
fi
# No Kerberos/GSSAPI negotiation in tests: libpq's krb5 state was seen to abort a test process at exit.
export PGGSSENCMODE=disable
swift build --build-tests
swift test --skip-build --parallel --num-workers "${NEXJOBS_TEST_WORKERS:-2}" "$@"
