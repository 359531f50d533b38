#!/usr/bin/env bash
# analyze's exposition parser against Python's prometheus_client parser: captures a short run
# against recap-sim with `--scrape` of its /metrics (each held-out exposition of
# fixtures/metrics/ and the simulator's live series), analyzes it, and checks every sample of
# every scrape (tests/server_metrics_check.py).
# Usage: bash tests/server_metrics.sh OUT_DIR [PYTHON]   (binaries from `cargo build --workspace`)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tests/server_metrics.sh OUT_DIR [PYTHON]}"
python="${2:-python3}"
bin="${CARGO_TARGET_DIR:-target}/debug"
rm -rf "$out" && mkdir -p "$out"
# shellcheck source=tests/sim.sh
. tests/sim.sh
# A held-out exposition in the shapes vLLM, DCGM and Go clients write, and one a real
# llama.cpp server wrote.
for exposition in fixtures/metrics/exposition.prom fixtures/metrics/llamacpp.prom; do
  name="$(basename "$exposition" .prom)"
  start_sim "$bin/recap-sim" "$out/$name.sim.out" --ttft 5ms --itl 5ms --output-tokens 20 \
    --cache-share 0.5 --metrics-file "$exposition"
  "$bin/capture" --url "http://$addr" --out "$out/$name" --quiet --concurrency 4 --requests 40 \
    --scrape "http://$addr/metrics" --scrape-interval 100ms
  "$bin/analyze" report "$out/$name" --tokenizer fixtures/tokenizers/gpt2/tokenizer.json.gz -q
  "$python" tests/server_metrics_check.py "$out/$name"
  stop_sim
done
