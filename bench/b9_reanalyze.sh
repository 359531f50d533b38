#!/usr/bin/env bash
# B9 (and B8 at scale): analyze a capture, then re-analyze it with other SLOs and definitions;
# the second run reuses the token-count cache. Prints both times and the ratio, plus the first
# run's time against a tokenization-only pass (B8 asks total <= 1.2x tokenization).
# Usage: bash bench/b9_reanalyze.sh [REQUESTS=20000] [TOKENS=500]
source "$(dirname "$0")/lib.sh"
n="${1:-20000}"; tokens="${2:-500}"
build_release
# Distinct prompts, so every output text is distinct too (recap-sim derives text from the prompt)
# and deduplication cannot hide the tokenization cost.
python3 -c "
import json
with open('$work/prompts.jsonl', 'w') as f:
    for i in range($n):
        f.write(json.dumps({'messages': [{'role': 'user', 'content': f'distinct question number {i}'}]}) + '\\n')
"
start_sim --threads 1 --output-tokens "$tokens" --prerender
"$target/release/capture" --url "http://$addr" --dataset "$work/prompts.jsonl" --out "$work/run" \
  --concurrency 64 --requests "$n" --quiet
stop_sim
tok=fixtures/tokenizers/qwen3/tokenizer.json.gz
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); python3 -c "print(f'{$e - $s:.3f}')"; }
first=$(t "$target/release/analyze" report "$work/run" --tokenizer "$tok" -q)
second=$(t "$target/release/analyze" report "$work/run" --tokenizer "$tok" --slo ttft=1s,tpot=20ms --ttft-on any -q)
rm -rf "$work/run/analysis"
python3 - "$n" "$tokens" "$first" "$second" <<'PY'
import sys
n, tokens, first, second = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
print(f"B9 {n} requests x {tokens} tokens: first analysis {first:.2f} s, re-analysis with other SLOs and "
      f"--ttft-on any {second:.2f} s | ratio {first / second:.1f}x (target >= 10x)")
PY
