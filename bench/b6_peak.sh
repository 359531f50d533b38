#!/usr/bin/env bash
# B6 (peak): the highest open-loop rate at which capture's first-token timestamps stay within
# 200 µs p99 of the simulator's own send time. Runs B6 (bench/b6_fidelity.sh) at each rate of
# a list, SECONDS of requests each, one invocation, and names the highest rate that met it.
# OTHER_CAPTURE_BINARY (e.g. a previous commit's release build) is measured at each rate right
# after this build (the B6 script's capture is taken from RECAP_CAPTURE_BIN when set).
# Usage: bash bench/b6_peak.sh [RATES=1000,2000,4000,8000] [SECONDS=5] [OTHER_CAPTURE_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
rates="${1:-1000,2000,4000,8000}"; secs="${2:-5}"; other="${3:-}"
if [ "${RECAP_BENCH_NO_BUILD:-0}" != 1 ]; then cargo build --workspace --release --quiet; fi
declare -A peak=([this]=none [other]=none)
for rate in ${rates//,/ }; do
  for b in "this=" ${other:+"other=$other"}; do
    name="${b%%=*}"; bin="${b#*=}"
    line="$(RECAP_CAPTURE_BIN="$bin" RECAP_BENCH_NO_BUILD=1 bash bench/b6_fidelity.sh "$rate" "$((rate * secs))" | grep '^B6 ')"
    echo "[$name] $line"
    p99="$(sed -n 's/.*p99 \(-\{0,1\}[0-9]*\) us.*/\1/p' <<<"$line")"
    if [ -n "$p99" ] && [ "$p99" -lt 200 ]; then peak[$name]="$rate req/s"; fi
  done
done
echo "B6 peak: highest rate with p99 < 200 us: ${peak[this]}${other:+ (other: ${peak[other]})}"
