#!/usr/bin/env bash
# A short run of the chaos suite for CI: one run per nemesis (kill, pause, partition), each
# for the given number of seconds, on three real nodes. The long campaign behind
# jepsen/RESULTS.md is `scripts/chaos-campaign.sh`; it is not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
target="${CARGO_TARGET_DIR:-$HOME/.cache/endure-target}"
out="${CHAOS_OUT:-$(mktemp -d /tmp/endure-chaos-smoke.XXXXXX)}"
failed=0
for nemesis in kill pause partition; do
  echo "-- endure-chaos run --nemesis $nemesis --time-limit $secs"
  if ! "$target/release/endure-chaos" run --nemesis "$nemesis" --time-limit "$secs" \
      --seed 7 --endure-bin "$target/release/endure" --out "$out/$nemesis"; then
    echo "chaos smoke: $nemesis failed; the run is kept in $out/$nemesis"
    failed=1
  fi
done
exit "$failed"
