#!/usr/bin/env bash
# Runs the whole test suite against a real PostgreSQL.
# Without NEXJOBS_TEST_DATABASE_URL it starts a throwaway cluster on a free port in a temp folder and removes it
# afterwards. Extra arguments go to `swift test` (e.g. --filter WorkerTests).
# The last line is `N tests passed, M failed` (XCTest and Swift Testing together); the exit status is swift test's.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/nexjobs-test-results.XXXXXX)
cleanup() {
  if [ -n "${tmp:-}" ]; then bash deploy/pg-cluster.sh stop "$tmp/data" || true; rm -rf "$tmp"; fi
  rm -rf "$out"
}
trap cleanup EXIT
if [ -z "${NEXJOBS_TEST_DATABASE_URL:-}" ]; then
  tmp=$(mktemp -d /tmp/nexjobs-test-pg.XXXXXX)
  chmod 755 "$tmp"
  # Below the ephemeral port range (32768+), so no outgoing socket holds it.
  port=${NEXJOBS_TEST_PG_PORT:-$((20000 + RANDOM % 12000))}
  NEXJOBS_TEST_DATABASE_URL=$(bash deploy/pg-cluster.sh start "$tmp/data" "$port")
  export NEXJOBS_TEST_DATABASE_URL
  echo "test cluster: $NEXJOBS_TEST_DATABASE_URL"
fi
# No Kerberos/GSSAPI negotiation in tests: libpq's krb5 state was seen to abort a test process at exit.
export PGGSSENCMODE=disable
if ! swift build --build-tests; then
  echo "build failed: no tests ran"
  exit 1
fi
# --xunit-output writes results.xml (XCTest, in parallel mode only: there each test runs in a process of its own and
# a crash is that test's failure) and results-swift-testing.xml (Swift Testing).
mode=(--parallel --num-workers "${NEXJOBS_TEST_WORKERS:-2}")
for a in "$@"; do [ "$a" = --no-parallel ] && mode=(); done
set +e
swift test --skip-build "${mode[@]}" --xunit-output "$out/results.xml" "$@" 2>&1 | tee "$out/log"
status=${PIPESTATUS[0]}
set -e

# Test cases in an xunit file: total, failed (a case with at least one <failure> or <error>), skipped.
count_xunit() {
  awk '
    /<testcase[ >]/ { total++; open = ($0 !~ /\/>[[:space:]]*$/); marked = 0 }
    open && /<(failure|error)[ >\/]/ && !marked { failed++; marked = 1 }
    open && /<skipped[ >\/]/ && !marked { skipped++; marked = 1 }
    /<\/testcase>/ { open = 0 }
    END { printf "%d %d %d\n", total, failed, skipped }
  ' "$1"
}
# Without results.xml (swift test run without --parallel), XCTest's own lines: a case that started and never
# passed, failed or was skipped is one that crashed the test process, so it counts as failed.
count_xctest_log() {
  awk '
    /^Test Case .* started/ { started++ }
    /^Test Case .* passed \(/ { passed++ }
    /^Test Case .* failed \(/ { failed++ }
    /^Test Case .* skipped \(/ { skipped++ }
    END { printf "%d %d %d\n", started, started - passed - skipped, skipped }
  ' "$1"
}
total=0; failed=0; skipped=0
if [ -f "$out/results.xml" ]; then read -r t f s < <(count_xunit "$out/results.xml")
else read -r t f s < <(count_xctest_log "$out/log"); fi
total=$((total + t)); failed=$((failed + f)); skipped=$((skipped + s))
if [ -f "$out/results-swift-testing.xml" ]; then
  read -r t f s < <(count_xunit "$out/results-swift-testing.xml")
  total=$((total + t)); failed=$((failed + f)); skipped=$((skipped + s))
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # A failing run with no failed case in its results: the test process died before reporting (or swift test failed).
  echo "swift test exited with status $status without a failed test in its results: counted as 1 failed"
  failed=1
  total=$((total + 1))
fi
passed=$((total - failed - skipped))
if [ "$skipped" -gt 0 ]; then
  echo "$passed tests passed, $failed failed, $skipped skipped"
else
  echo "$passed tests passed, $failed failed"
fi
if [ "$status" -eq 0 ] && [ "$failed" -gt 0 ]; then exit 1; fi
exit "$status"
