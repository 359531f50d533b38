#!/usr/bin/env bash
# analyze's exposition parser against Python's prometheus_client parser: captures a short run
# against recap-sim with `--scrape` of its /metrics (the held-out fixtures/metrics/exposition.prom
# and the simulator's live series), analyzes it, and checks every sample of every scrape
# (tests/server_metrics_check.py).
# Usage: bash tests/server_metrics.sh OUT_DIR [PYTHON]   (binaries from `cargo build --workspace`)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tests/server_metrics.sh OUT_DIR [PYTHON]}"
python="${2:-python3}"
bin="${CARGO_TARGET_DIR:-target}/debug"
rm -rf "$out" && mkdir -p "$out"
log="$out/sim.out"
"$bin/recap-sim" --port 0 --ttft 5ms --itl 5ms --output-tokens 20 --cache-share 0.5 \
  --metrics-file fixtures/metrics/exposition.prom >"$log" 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do
  grep -q '^listening on ' "$log" 2>/dev/null && break
  kill -0 "$sim_pid" 2>/dev/null || break
  sleep 0.05
done
addr="$(sed -n 's/^listening on //p' "$log" | head -n 1)"
[ -n "$addr" ] || { echo "recap-sim did not start:" >&2; cat "$log" >&2; exit 1; }
"$bin/capture" --url "http://$addr" --out "$out/run" --quiet --concurrency 4 --requests 40 \
  --scrape "http://$addr/metrics" --scrape-interval 100ms
"$bin/analyze" report "$out/run" --tokenizer fixtures/tokenizers/gpt2/tokenizer.json.gz -q
"$python" tests/server_metrics_check.py "$out/run"
