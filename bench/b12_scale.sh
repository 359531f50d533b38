#!/usr/bin/env bash
# B12: analyze at the seeds' scale. The same capture shape at two sizes (default 100k and 1M
# streamed answers of ~16 KB, ~4k tokens each: the seeds' 1M x ~3,900-token run), analyzed
# end to end on this machine: wall time, peak RSS, tokens counted and the per-core rate
# against the seeds' 0.32 M tokens/s per core (MLCommons' sharded `tokenizers` drain on a
# 144-core GB200). Then a re-analysis of the large run with another tokenizer, which must
# read the texts cache, not the events.
#
# Baseline, same invocation: Python `tokenizers` `encode_batch_fast` (all cores, batches of
# 1,000 texts) with TOKENIZER on the first BASELINE_TEXTS (default 20,000) non-empty texts of
# the large run's `analysis/texts.parquet` (all of a 1M run would take the baseline ~45 minutes
# and more memory than the machine has); encode time only, its tokens checked against Recap's
# counts of the same texts in `tokens.parquet`; then the ratio of Recap's end to end tokens/s
# per core to it (target >= 10x).
#
# The captures: `recap-sim --corpus` streams this machine's Python standard library sources
# (~8,000 texts of 16,000 bytes, in 64-byte events; later rounds prefixed `[round N] `, so
# every answer is distinct and the count cache cannot hide the work), recorded by `capture`
# at concurrency 32. They are kept in ~/.cache/recap/scale/run<N> (1M: ~10 minutes, 4.4 GB)
# and reused while they are complete.
# Usage: bash bench/b12_scale.sh [SMALL=100000] [LARGE=1000000] [TOKENIZER=deepseek_v3] [OTHER=qwen3] [BASELINE_TEXTS=20000]
source "$(dirname "$0")/lib.sh"
small="${1:-100000}"; large="${2:-1000000}"
tok="fixtures/tokenizers/${3:-deepseek_v3}/tokenizer.json.gz"
other="fixtures/tokenizers/${4:-qwen3}/tokenizer.json.gz"
baseline_texts="${5:-20000}"
build_release
ensure_venv
scale="$HOME/.cache/recap/scale"
mkdir -p "$scale"

python3 - "$scale/corpus.jsonl" "$scale/prompts.jsonl" <<'PY'
import json, os, pathlib, sys, sysconfig
corpus, prompts = sys.argv[1:]
if not os.path.exists(corpus):
    size, texts, buf = 16000, [], ""
    for p in sorted(pathlib.Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            buf += p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        while len(buf) >= size:
            texts.append(buf[:size]); buf = buf[size:]
    with open(corpus, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
if not os.path.exists(prompts):
    with open(prompts, "w") as f:
        for i in range(1000):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Explain module number {i} of the standard library."}]}) + "\n")
PY

# capture_run N: the capture of N answers, reused when a complete one is there.
capture_run() {
  local n="$1" run="$scale/run$1"
  if [ -f "$run/manifest.json" ] && grep -q '"status": *"complete"' "$run/manifest.json"; then return; fi
  rm -rf "$run"
  start_sim --threads 1 --corpus "$scale/corpus.jsonl" --prerender
  "$target/release/capture" --url "http://$addr" --dataset "$scale/prompts.jsonl" --out "$run" \
    --concurrency 32 --requests "$n" --quiet
  stop_sim
}

# analyze_run NAME RUN TOKENIZER: analyze report at -v under /usr/bin/time; prints one line.
analyze_run() {
  local name="$1" run="$2" t="$3"
  /usr/bin/time -f '%e %M' -o "$work/time" "$target/release/analyze" report "$run" --tokenizer "$t" \
    --json -v >"$work/$name.json" 2>"$work/$name.log"
  read -r wall rss <"$work/time"
  "$venv/bin/python" - "$name" "$run" "$wall" "$rss" "$work/$name.json" "$work/$name.log" <<'PY'
import json, os, re, sys
import pyarrow.parquet as pq
name, run, wall, rss, summary, log = sys.argv[1:]
wall, rss = float(wall), int(rss) * 1024
s = json.load(open(summary))[0]
m = pq.read_table(os.path.join(run, "analysis", s["tokenizer_id"], "metrics.parquet"),
                  columns=["tokenizer_output_tokens", "tokenizer_input_tokens"])
out_tok = sum(v for v in m.column(0).to_pylist() if v)
in_tok = sum(v for v in m.column(1).to_pylist() if v)
text = open(log).read()
stages = {k: float(v) for k, v in re.findall(r"stage ([a-z ]+): ([0-9.]+) s", text)}
cores = os.cpu_count()
per_core = (out_tok + in_tok) / wall / cores
src = ("texts cache" if "counting new texts from" in text else "") + \
      ("events" if "reassembling from the events" in text else "")
print(f"B12 {name:>14}: {m.num_rows:>9,} requests, {out_tok / 1e9:.3f} G output + {in_tok / 1e6:.1f} M input tokens, "
      f"{wall:7.1f} s wall, peak RSS {rss / 2**30:.2f} GiB, {per_core / 1e6:.2f} M tokens/s per core "
      f"({per_core / 0.32e6:.1f}x the seeds' 0.32 M) | texts from {src} | engine {s.get('tokenizer_engine', '?')[:40]} | "
      + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
json.dump({"wall": wall, "rss": rss, "tokens": out_tok + in_tok, "src": src, "per_core": per_core}, open(f"{summary}.b12", "w"))
PY
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average $(cut -d" " -f1 /proc/loadavg) (1 min) at the start"
for n in "$small" "$large"; do
  capture_run "$n"
  rm -rf "$scale/run$n/analysis"
  analyze_run "first-$n" "$scale/run$n" "$tok"
done
# Another tokenizer on the large run: only tokenization is redone.
analyze_run "retokenize-$large" "$scale/run$large" "$other"
du -sh "$scale/run$large/events" "$scale/run$large/analysis/"*.parquet | sed 's/^/B12 disk: /'

# Baseline: `tokenizers` encode_batch_fast on a fixed sample of the large run's texts, encode only.
gzip -dc "$tok" >"$work/tokenizer.json"
"$venv/bin/python" - "$scale/run$large" "$work/tokenizer.json" "$baseline_texts" "$work/first-$large.json" \
  "$work/baseline.b12" <<'PY'
import json, os, sys, time
import pyarrow.parquet as pq
from tokenizers import Tokenizer, __version__
run, path, limit, summary, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
tok = Tokenizer.from_file(path)
tok_id = json.load(open(summary))[0]["tokenizer_id"]
counts = pq.read_table(os.path.join(run, "analysis", tok_id, "tokens.parquet"), columns=["text_hash", "add_special_tokens", "tokens"])
ours = {h: t for h, s, t in zip(*(counts.column(c).to_pylist() for c in ("text_hash", "add_special_tokens", "tokens"))) if not s}
n = tokens = nbytes = expected = 0
encode_s = 0.0
for batch in pq.ParquetFile(os.path.join(run, "analysis", "texts.parquet")).iter_batches(batch_size=1000, columns=["text_hash", "text"]):
    rows = [(h, t) for h, t in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()) if t][: limit - n]
    texts = [t for _, t in rows]
    start = time.perf_counter()
    encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    encode_s += time.perf_counter() - start
    tokens += sum(len(e.ids) for e in encodings)
    del encodings
    expected += sum(ours.get(h, -1) for h, _ in rows)
    n += len(texts); nbytes += sum(len(t.encode()) for t in texts)
    if n >= limit:
        break
cores = os.cpu_count()
per_core = tokens / encode_s / cores
same = "equal to Recap's counts of the same texts" if tokens == expected else f"DIFFER from Recap's {expected:,}"
print(f"B12 baseline: Python tokenizers {__version__} encode_batch_fast ({cores} cores, batches of 1,000) on the first {n:,} texts "
      f"of the large run's texts.parquet ({nbytes / 1e6:.0f} MB, {tokens / 1e6:.1f} M tokens, {same}): "
      f"{encode_s:.1f} s encode only, {per_core / 1e6:.2f} M tokens/s per core")
json.dump({"per_core": per_core, "texts": n}, open(out, "w"))
PY

"$venv/bin/python" - "$work" "$small" "$large" <<'PY'
import json, sys
work, small, large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a, b = (json.load(open(f"{work}/first-{n}.json.b12")) for n in (small, large))
r = json.load(open(f"{work}/retokenize-{large}.json.b12"))
base = json.load(open(f"{work}/baseline.b12"))
print(f"B12 linearity: {large // small}x the requests took {b['wall'] / a['wall']:.2f}x the time "
      f"(per token: {b['wall'] / b['tokens'] / (a['wall'] / a['tokens']):.2f}x); peak RSS {b['rss'] / 2**30:.2f} GiB "
      f"vs {a['rss'] / 2**30:.2f} GiB (target < 8 GiB)")
print(f"B12 re-analysis with another tokenizer: {r['wall']:.1f} s vs first {b['wall']:.1f} s, texts from {r['src']} "
      f"(target: the texts cache, not the events)")
print(f"B12 vs baseline: Recap end to end (first analysis of {large:,} requests) {b['per_core'] / 1e6:.2f} M tokens/s per core, "
      f"tokenizers encode_batch_fast (encode only, first {base['texts']:,} texts) {base['per_core'] / 1e6:.2f} M tokens/s per core | "
      f"ratio {b['per_core'] / base['per_core']:.1f}x (target >= 10x)")
PY
