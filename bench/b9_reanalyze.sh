#!/usr/bin/env bash
# B9 (and B8 at scale): analyze a capture, then re-analyze it with other SLOs and definitions;
# the second run reuses the token-count cache. Prints both times and the ratio, plus the first
# run's time against a tokenization-only pass (B8 asks total <= 1.2x tokenization).
# Usage: bash bench/b9_reanalyze.sh [REQUESTS=20000] [TOKENS=500]   (B8 as the issue sizes it: 100000 500)
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
# t LOG CMD...: runs CMD at -v with its log in LOG, prints its wall time in seconds.
t() { local log="$1" s e; shift; s=$(date +%s.%N); "$@" -v >/dev/null 2>"$log"; e=$(date +%s.%N); python3 -c "print(f'{$e - $s:.3f}')"; }
first=$(t "$work/first.log" "$target/release/analyze" report "$work/run" --tokenizer "$tok")
second=$(t "$work/second.log" "$target/release/analyze" report "$work/run" --tokenizer "$tok" --slo ttft=1s,tpot=20ms --ttft-on any)
rm -rf "$work/run/analysis"
python3 - "$n" "$tokens" "$first" "$second" "$work/first.log" "$work/second.log" <<'PY'
import re, sys
n, tokens, first, second, log1, log2 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
def stages(path):
    out = {}
    for line in open(path):
        m = re.search(r"stage ([a-z ]+): ([0-9.]+) s", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out
s1, s2 = stages(log1), stages(log2)
tok = s1.get("tokens", float("nan"))
print(f"first analysis stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in s1.items()))
print(f"re-analysis stages:    " + ", ".join(f"{k} {v:.2f} s" for k, v in s2.items()))
print(f"B8 {n} requests x {tokens} tokens: first analysis {first:.2f} s, its tokenization {tok:.2f} s | "
      f"ratio {first / tok:.2f}x (target <= 1.2x)")
print(f"B9 re-analysis with other SLOs and --ttft-on any {second:.2f} s vs first {first:.2f} s | "
      f"ratio {first / second:.1f}x (target >= 10x)")
PY
