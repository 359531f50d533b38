#!/usr/bin/env bash
# `capture --live` as other processes see it: two captures against recap-sim, their /metrics
# parsed by prometheus_client, their /stream read, their final snapshots compared with the
# manifest and analyze, and `plot --live` checked on screen under tmux (tests/live_check.py).
# Usage: bash tests/live.sh OUT_DIR [PYTHON]   (binaries from `cargo build --workspace`)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tests/live.sh OUT_DIR [PYTHON]}"
python="${2:-python3}"
bin="${CARGO_TARGET_DIR:-target}/debug"
rm -rf "$out" && mkdir -p "$out"
# shellcheck source=tests/sim.sh
. tests/sim.sh
# About 150 ms a request (20 ms to the first token, 20 tokens 5 ms apart): runs of ~4 s, long
# enough for the stream and the scraper to see them go.
# One prompt in ten answered 500 at once (no output): errors to count, no latency to skew.
start_sim "$bin/recap-sim" "$out/sim.out" --ttft 20ms --itl 5ms --output-tokens 20 --error-rate 0.1
"$python" tests/live_check.py "$bin" "$addr" "$out"
stop_sim
