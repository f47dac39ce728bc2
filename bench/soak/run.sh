#!/usr/bin/env bash
# Long chaos soak: the CI test ChaosSoakTests (Tests/CLITests/ChaosSoakTests.swift) with a longer chaos phase.
#
# Usage: bench/soak/run.sh [SECONDS]     chaos duration, 20...7200 (default 900 = 15 minutes)
#   NEXJOBS_SOAK_SEED=N         repeat a run (kill schedule, sandbox world and fault draws); default random
#   NEXJOBS_SOAK_CONNECTIONS=N  per platform, 2...50 (default 4)
#   NEXJOBS_SOAK_WORKERS=N      2...20 (default 3)
#   NEXJOBS_SOAK_FAULTS=kind=p,...  replace the fault set (default: the test's, see ChaosSoakTests.defaultFaults)
# The test starts and stops its own PostgreSQL cluster (deploy/pg-cluster.sh, port 26000-31999) and needs no
# NEXJOBS_TEST_DATABASE_URL. Writes bench/results/soak-<date>.log; prints the summary line.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-900}
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 20 ] || [ "$seconds" -gt 7200 ]; then
  echo "usage: $0 [SECONDS]   (chaos duration, 20...7200)" >&2
  exit 2
fi
export NEXJOBS_SOAK_SECONDS=$seconds PGGSSENCMODE=disable
swift build --build-tests >/dev/null
mkdir -p bench/results
log=bench/results/soak-$(date -u +%Y-%m-%d-%H%M).log
echo "soak: $seconds s of chaos; full output in $log"
set +e
swift test --skip-build --filter ChaosSoakTests >"$log" 2>&1
status=$?
set -e
grep -E "^soak|error:|Executed .* tests?," "$log" | head -40
exit "$status"
