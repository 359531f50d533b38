#!/usr/bin/env bash
# B10: `analyze dataset synthetic` rows/s for token-exact prompts, against vLLM's `random`
# recipe (decode random ids, re-encode, cut, decode) in Python `tokenizers`, in one invocation.
# Usage: bash bench/b10_dataset.sh [COUNT=100000] [ISL=1024] [BASELINE_COUNT=5000] [TOKENIZER]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-100000}"
isl="${2:-1024}"
baseline_count="${3:-5000}"
tokenizer="${4:-fixtures/tokenizers/qwen3/tokenizer.json.gz}"
target="${CARGO_TARGET_DIR:-target}"
venv="${RECAP_CI_VENV:-$HOME/.cache/recap/venv}"

cargo build --workspace --release --quiet
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tokenizers' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check tokenizers
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
for api in chat completions; do
  flag=""; [ "$api" = completions ] && flag="--completions"
  /usr/bin/time -f '%e %M' -o "$out/time" "$target/release/analyze" dataset synthetic --tokenizer "$tokenizer" \
    --count "$count" --isl "$isl" --osl 256 --seed 1 $flag --out "$out/$api.jsonl" --json >"$out/$api.json"
  read -r wall rss <"$out/time"
  python3 - "$out/$api.json" "$api" "$wall" "$rss" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))
print(f"recap {sys.argv[2]:12s}: {w['rows']} rows of {w['isl']['min']}..{w['isl']['max']} input tokens, "
      f"exact {w['exact_rows']}/{w['rows']}, {w['seconds']:.2f} s generating ({w['rows_per_s']:.0f} rows/s), "
      f"{sys.argv[3]} s wall incl. tokenizer load, peak RSS {int(sys.argv[4]) // 1024} MiB")
PY
done
"$target/release/analyze" dataset inspect "$out/chat.jsonl" --tokenizer "$tokenizer" --json \
  | python3 -c 'import json,sys; i=json.load(sys.stdin); print("inspect: planned isl_tokens equal on %d/%d rows" % (i["planned_equal"], i["planned_rows"]))'
base="$("$venv/bin/python" bench/dataset_baseline.py "$tokenizer" "$baseline_count" "$isl")"
python3 - "$base" "$out/completions.json" <<'PY'
import json, sys
b = json.loads(sys.argv[1]); r = json.load(open(sys.argv[2]))
print(f"baseline (vLLM random recipe, Python tokenizers, 1 thread): {b['rows']} rows, {b['rows_per_s']:.0f} rows/s, "
      f"exact {b['exact_rows']}/{b['rows']} ({100*b['exact_rows']/b['rows']:.1f}%)")
print(f"ratio: recap completions {r['rows_per_s'] / b['rows_per_s']:.1f}x the baseline's rows/s, "
      f"and exact on 100% of rows")
PY
