#!/usr/bin/env bash
# The HTML reports as a person sees them. Captures a concurrency sweep with repeats against
# recap-sim (a few injected failures, so errors show), analyzes it, writes the sweep's, one
# run's and a comparison's report with `plot --html`, and checks each in a real headless
# browser (tests/html_report.py). Screenshots land beside the reports; `sweep.png` is the
# README's docs/images/report.png.
# Usage: bash tests/report.sh OUT_DIR [PYTHON]   (binaries from an earlier `cargo build --workspace`)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tests/report.sh OUT_DIR [PYTHON]}"
python="${2:-python3}"
bin="${CARGO_TARGET_DIR:-target}/debug"
tokenizer=fixtures/tokenizers/qwen3/tokenizer.json.gz
rm -rf "$out" && mkdir -p "$out"

# shellcheck source=tests/sim.sh
. tests/sim.sh
start_sim "$bin/recap-sim" "$out/sim.out" --ttft 20ms --itl 2ms --tokenizer "$tokenizer" \
  --error-rate 0.05 --stream-error-rate 0.02

echo "==> capture: concurrency 1, 4 and 16, three repeats each" >&2
"$bin/capture" --url "http://$addr" --model recap-sim --out "$out/sweep" --quiet \
  --concurrency 1,4,16 --repeat 3 --requests 48 --warmup-requests 4 --max-tokens 48
runs=()
while IFS= read -r m; do runs+=("$(dirname "$m")"); done < <(ls "$out"/sweep/*/manifest.json | sort)
[ "${#runs[@]}" -eq 9 ] || { echo "expected 9 runs, found ${#runs[@]}" >&2; exit 1; }

echo "==> analyze and plot --html" >&2
"$bin/analyze" sweep "${runs[@]}" --tokenizer "$tokenizer" --out "$out/report" -q
"$bin/plot" "$out/report" --html --out "$out/html" -q
one="${runs[4]}"
"$bin/analyze" report "$one" --tokenizer "$tokenizer" --slo ttft=50ms,tpot=10ms -q
"$bin/plot" "$one" --html --out "$out/html" -q
"$bin/analyze" compare "${runs[0]}" "${runs[8]}" --tokenizer "$tokenizer" --stats p50,p99 \
  --format json >"$out/compare.json"
"$bin/plot" "${runs[0]}" "${runs[8]}" --compare --html --comparison "$out/compare.json" \
  --out "$out/html" -q

echo "==> the reports in a headless browser" >&2
summary="$(ls "$one"/analysis/*/summary.json)"
# The sweep's screenshot (its top 1640 px) is the README's docs/images/report.png.
"$python" tests/html_report.py "$out/html/report.html" "$out/report/sweep.json" "$out/sweep.png" 2 1640
"$python" tests/html_report.py "$out/html/$(basename "$one").html" "$summary" "$out/run.png" 5
"$python" tests/html_report.py "$out/html/compare.html" "$out/compare.json" "$out/compare.png" 2
