#!/usr/bin/env bash
# B14: what `analyze report` costs on a small run, where fixed costs (parsing and self-checking
# the tokenizer, opening the segments, writing the outputs) outweigh the counting. A capture of
# REQUESTS streamed chat requests (fixtures/datasets/default.jsonl, recap-sim's defaults: 16
# tokens per answer, one per SSE event; c=16), then, REPEATS times: a first analysis (the
# `analysis` folder deleted) with the tokenizer compiled by an earlier analysis (in the user's
# cache, here `$work/cache`: a sweep or compare over many runs), the same with nothing cached
# (an empty cache folder each time: the first analysis ever with this tokenizer and build), a
# re-analysis with the same tokenizer (folder kept) and the baseline, each timed as a whole
# process (wall and user+sys CPU, bash `time`); medians.
# Beforehand, after an untimed warm-up of both sides, one first analysis at -v (timed, not in
# the medians) shows where the fixed cost goes.
#
# The baseline is what a peer client does for the same run: a Python process that loads the
# tokenizer (`tokenizers.Tokenizer.from_file` on the decompressed tokenizer.json) and encodes
# every request's output text with `encode_batch_fast` (all cores). Its texts are read from
# `analysis/records.parquet` + `analysis/texts.parquet` (one text per request, repeats
# included: a client encodes every answer), else reassembled from the `events` segments;
# reading them is inside the process's time and also shown apart, since a client has them in
# memory already.
# Usage: bash bench/b14_small_run.sh [REQUESTS=200] [TOKENIZER=qwen3] [REPEATS=5]
source "$(dirname "$0")/lib.sh"
n="${1:-200}"; tok_name="${2:-qwen3}"; repeats="${3:-5}"
tok="fixtures/tokenizers/$tok_name/tokenizer.json.gz"
[ -f "$tok" ] || { echo "no tokenizer at $tok" >&2; exit 1; }
build_release
ensure_venv
gzip -dc "$tok" >"$work/tokenizer.json"
run="$work/run"

start_sim
"$target/release/capture" --url "http://$addr/v1/chat/completions" --dataset fixtures/datasets/default.jsonl \
  --out "$run" --concurrency 16 --requests "$n" --quiet
stop_sim

cat >"$work/baseline.py" <<'PY'
# B14 baseline: a peer client's tokenization of a run's output texts, as one process.
import time
t0 = time.perf_counter()
import glob, json, os, sys
from tokenizers import Tokenizer
t1 = time.perf_counter()
run, path, out = sys.argv[1:]
tok = Tokenizer.from_file(path)
t2 = time.perf_counter()
import pyarrow.parquet as pq
texts_file, records_file = os.path.join(run, "analysis", "texts.parquet"), os.path.join(run, "analysis", "records.parquet")
texts_file = texts_file if os.path.exists(texts_file) else next(iter(glob.glob(os.path.join(run, "analysis", "*", "texts.parquet"))), None)
texts = []
if texts_file and os.path.exists(records_file):
    source = "analysis/records.parquet + texts.parquet"
    t = pq.read_table(texts_file, columns=["text_hash", "text"]).to_pydict()
    by_hash = dict(zip(t["text_hash"], t["text"]))
    r = pq.read_table(records_file, columns=["content_hash", "reasoning_hash", "tool_args_hash"]).to_pydict()
    for col in r.values():
        texts += [by_hash[h] for h in col if h is not None and by_hash.get(h)]
else:
    source = "events (reassembled in seq order)"
    pieces = {}
    for seg in sorted(glob.glob(os.path.join(run, "events", "*.parquet"))):
        t = pq.read_table(seg, columns=["request_id", "kind", "seq", "content", "reasoning"]).to_pydict()
        for rid, kind, seq, content, reasoning in zip(t["request_id"], t["kind"], t["seq"], t["content"], t["reasoning"]):
            if kind == "sse":
                for field, text in (("content", content), ("reasoning", reasoning)):
                    if text:
                        pieces.setdefault((rid, field), []).append((seq, text))
    texts = ["".join(c for _, c in sorted(v)) for _, v in sorted(pieces.items())]
t3 = time.perf_counter()
encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
t4 = time.perf_counter()
json.dump({"source": source, "texts": len(texts), "distinct": len(set(texts)),
           "tokens": sum(len(e.ids) for e in encodings),
           "phases": {"import tokenizers": t1 - t0, "Tokenizer.from_file": t2 - t1,
                      "read texts (pyarrow)": t3 - t2, "encode_batch_fast": t4 - t3},
           "in_process": t4 - t0}, open(out, "w"))
PY

# timed LABEL CMD...: runs CMD (output discarded) and appends "LABEL wall user sys" to $work/times.
timed() {
  local label="$1"; shift
  { time "$@" >/dev/null 2>"$work/cmd.err"; } 2>"$work/t" || { cat "$work/cmd.err" >&2; exit 1; }
  echo "$label $(cat "$work/t")" >>"$work/times"
}
analyze=("$target/release/analyze" report "$run" --tokenizer "$tok")
export RECAP_CACHE="$work/cache"

load_start="$(cut -d' ' -f1 /proc/loadavg)"
# Untimed warm-up of both (page cache, .pyc), then one timed first analysis at -v for its
# stage lines (not in the medians).
"${analyze[@]}" --quiet >/dev/null
rm -rf "$run/analysis"
"$venv/bin/python" "$work/baseline.py" "$run" "$work/tokenizer.json" "$work/base-warm.json"
: >"$work/times"
TIMEFORMAT='%3R %3U %3S'
{ time "${analyze[@]}" -v >/dev/null 2>"$work/stages.log"; } 2>"$work/t"
echo "stages $(cat "$work/t")" >>"$work/times"
for i in $(seq 1 "$repeats"); do
  rm -rf "$run/analysis"
  timed first "${analyze[@]}" --quiet
  timed again "${analyze[@]}" --quiet
  rm -rf "$run/analysis"
  timed cold env RECAP_CACHE="$work/cold-$i" "${analyze[@]}" --quiet
  timed base "$venv/bin/python" "$work/baseline.py" "$run" "$work/tokenizer.json" "$work/base-$i.json"
done

"$venv/bin/python" - "$n" "$tok_name" "$repeats" "$run" "$work" "$load_start" <<'PY'
import glob, json, os, re, statistics, subprocess, sys
import pyarrow.parquet as pq
n, name, repeats, run, work, load_start = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
times = {}
for line in open(f"{work}/times"):
    label, wall, user, sys_ = line.split()
    times.setdefault(label, []).append((float(wall), float(user) + float(sys_)))
med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
walls = {k: " ".join(f"{w:.3f}" for w, _ in v) for k, v in times.items()}
model = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
              if l.startswith("Model name")), "?")
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 2**20
print(f"machine: {os.cpu_count()} cores ({model}), {mem:.0f} GiB, load average (1 min) {load_start} before the timed runs, {os.getloadavg()[0]:.2f} after")

stages = re.findall(r"stage (.+?): ([0-9.]+) s(.*)", open(f"{work}/stages.log").read())
load = sum(float(v) for k, v, _ in stages if k.startswith("tokenizer"))
metrics = glob.glob(f"{run}/analysis/*/metrics.parquet")[0]
summary = json.load(open(os.path.join(os.path.dirname(metrics), "summary.json")))
engine = summary.get("tokenizer_engine", "?") if isinstance(summary, dict) else "?"
ours = sum(v for v in pq.read_table(metrics, columns=["tokenizer_output_tokens"]).column(0).to_pylist() if v)
bases = [json.load(open(f"{work}/base-{i}.json")) for i in range(1, repeats + 1)]
b = bases[0]
phases = {k: statistics.median(x["phases"][k] for x in bases) for k in b["phases"]}
exit_start = statistics.median(t[0] - x["in_process"] for t, x in zip(times["base"], bases))
read = phases["read texts (pyarrow)"]
same = "equal" if ours == b["tokens"] else f"DIFFER (Recap {ours:,})"

print(f"B14 run: {n} streamed chat requests ({b['texts']} output texts, {b['distinct']} distinct), "
      f"{b['tokens']:,} output tokens by {name}, {repeats} repeats, medians of whole-process times")
print(f"B14 first analysis stages (-v, one run): " + ", ".join(f"{k} {float(v):.3f} s" for k, v, _ in stages))
fw, fc = med["first"]; aw, ac = med["again"]; bw, bc = med["base"]; cw, cc = med["cold"]
print(f"B14 Recap first analysis, tokenizer compiled before: {fw:.3f} s wall, {fc:.3f} s CPU (user+sys) [walls: {walls['first']}] | engine {engine}")
print(f"B14 Recap first analysis, nothing cached: {cw:.3f} s wall, {cc:.3f} s CPU [walls: {walls['cold']}]")
print(f"B14 Recap re-analysis:     {aw:.3f} s wall, {ac:.3f} s CPU [walls: {walls['again']}]")
print(f"B14 baseline (Python tokenizers Tokenizer.from_file + encode_batch_fast, texts from {b['source']}): "
      f"{bw:.3f} s wall, {bc:.3f} s CPU [walls: {walls['base']}]; tokens {same}")
print(f"B14 baseline inside: python start and exit {exit_start:.3f} s, " + ", ".join(f"{k} {v:.3f} s" for k, v in phases.items())
      + f"; without reading texts (a client has them in memory): {bw - read:.3f} s")
print(f"B14 ratio baseline/Recap: first analysis {bw / fw:.2f}x ({(bw - read) / fw:.2f}x against the baseline "
      f"without reading texts), nothing cached {bw / cw:.2f}x, re-analysis {bw / aw:.2f}x")
sw = times["stages"][0][0]
ok = "met" if fw <= 0.15 else "NOT met"
logged = sum(float(v) for k, v, rest in stages if "within" not in rest)
size = f"{n} requests" + ("" if n == "200" else " (the issue sizes it at 200)")
print(f"B14 target (issue): first analysis <= 0.15 s end to end for {size}: {fw:.3f} s, {ok}; "
      f"in the -v run ({sw:.3f} s wall) the tokenizer stage took {load:.3f} s ({load / sw:.0%}), "
      f"the other stages {logged - load:.3f} s, outside the stage lines (before the first one, exit) {sw - logged:.3f} s")
PY
