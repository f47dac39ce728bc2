#!/usr/bin/env bash
# Static checks of the deployment files, run by .ci/run:
#  - the Prometheus alert rules: `promtool check rules` and their unit tests (`promtool test rules`);
#  - the systemd units: `systemd-analyze verify` (any diagnostic fails the check, not just errors) and the
#    offline `systemd-analyze security` exposure score, which must stay at or below 2.0 ("OK"; --threshold takes tenths).
# Usage: bash deploy/check-ops.sh [NEXJOBS_BINARY]. The units name /usr/local/bin/nexjobs, which verify requires
# to exist: a copy of the units naming NEXJOBS_BINARY (default: the debug build, else /bin/true) is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in promtool systemd-analyze; do
  command -v "$tool" >/dev/null || { echo "check-ops: $tool is missing (Debian packages prometheus, systemd)" >&2; exit 1; }
done
promtool check rules deploy/prometheus/nexjobs-rules.yml
promtool test rules deploy/prometheus/tests/*.test.yml

bin=${1:-.build/debug/nexjobs}
[ -x "$bin" ] || bin=/bin/true
bin=$(readlink -f "$bin")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
units=()
for unit in deploy/systemd/*.service; do
  name=$(basename "$unit")
  # A template is verified through an instance of it.
  [[ $name == *@.service ]] && name=${name/@.service/@1.service}
  sed "s#/usr/local/bin/nexjobs#$bin#g" "$unit" > "$tmp/$name"
  units+=("$tmp/$name")
done
out=$(systemd-analyze verify "${units[@]}" 2>&1) || { echo "$out"; echo "check-ops: systemd-analyze verify failed" >&2; exit 1; }
if [ -n "$out" ]; then echo "$out"; echo "check-ops: systemd-analyze verify reported problems" >&2; exit 1; fi
for u in "${units[@]}"; do
  systemd-analyze security --offline=true --threshold=20 --no-pager "$u" | tail -n 1
done
echo "check-ops: rules, rule tests and ${#units[@]} systemd units OK"
