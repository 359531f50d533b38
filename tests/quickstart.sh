#!/usr/bin/env bash
# Recap quickstart: builds the workspace, starts the simulated endpoint on 127.0.0.1,
# records a short load test into runs/quickstart, analyzes it with the bundled Qwen3
# tokenizer (printing the summary) and writes its charts and its HTML report to
# runs/quickstart/charts.
# No endpoint of yours is needed. Usage: bash tests/quickstart.sh [extra capture flags]
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
out="${RECAP_QUICKSTART_OUT:-runs/quickstart}"

echo "==> building (debug)" >&2
cargo build --workspace --quiet

# The endpoint counts `usage` with the same tokenizer the analysis uses (as a real server
# does with its model's tokenizer), so the summary's "tokens vs server usage" line compares
# like with like.
tokenizer=fixtures/tokenizers/qwen3/tokenizer.json.gz
# shellcheck source=tests/sim.sh
. tests/sim.sh
start_sim "$target/debug/recap-sim" "$(mktemp -d)/sim.out" --ttft 20ms --itl 2ms --tokenizer "$tokenizer"
echo "==> recap-sim (pid $sim_pid) listening on $addr" >&2

echo "==> capture: 200 streaming chat requests at concurrency 8 into $out (and the server's /metrics)" >&2
"$target/debug/capture" --url "http://$addr" --model recap-sim --out "$out" --force \
  --concurrency 8 --requests 200 --warmup-requests 8 --max-tokens 64 \
  --scrape "http://$addr/metrics" --scrape-interval 250ms "$@"

echo "==> analyze: tokenize with the bundled Qwen3 tokenizer and summarize" >&2
"$target/debug/analyze" report "$out" --tokenizer "$tokenizer" \
  --slo ttft=50ms,tpot=10ms --window steady

echo "==> plot: charts of the run, and one self-contained HTML report" >&2
"$target/debug/plot" "$out" --out "$out/charts"
"$target/debug/plot" "$out" --html --out "$out/charts"
