#!/usr/bin/env bash
# B13: what the lossless record costs. Bytes on disk per event row and capture's CPU per
# recorded event row with raw payloads on (`--raw all`, the default), `--raw errors` and
# `--raw none`, against the previous build (another revision's capture) on the same streaming
# workload, in one invocation. CPU is counted twice: instructions per row under callgrind
# (repeatable whatever the machine is doing) and user+sys time per row without it.
# Usage: bash bench/b13_raw_cost.sh [REQUESTS=2000] [BASE_REVISION=b737b93]
source "$(dirname "$0")/lib.sh"
n="${1:-2000}"; base="${2:-b737b93}"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
build_release
# The base revision's capture, built in a throw-away worktree into a target folder of its own
# (kept between runs): cargo names a path crate's artifacts by its path inside the workspace,
# so two checkouts sharing one target folder overwrite each other's.
base_target="${RECAP_BASE_TARGET:-$HOME/.cache/recap/target-base}"
git worktree add --quiet --detach "$work/base" "$base"
(cd "$work/base" && CARGO_TARGET_DIR="$base_target" cargo build --release --workspace --bin capture --quiet)
cp "$base_target/release/capture" "$work/capture-base"
git worktree remove --force "$work/base"
start_sim --threads 1 --output-tokens 100 --prerender
measure() {
  local name="$1" bin="$2"; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" "$bin" --url "http://$addr" \
    --out "$work/$name-cg" --concurrency 16 --requests "$n" --threads 1 --quiet --json "$@" \
    >"$work/$name-cg.json" 2>"$work/$name.vg"
  /usr/bin/time -f '%U %S %M' -o "$work/$name.time" "$bin" --url "http://$addr" \
    --out "$work/$name" --concurrency 16 --requests "$((n * 10))" --threads 1 --quiet --json "$@" \
    >"$work/$name.json"
  python3 - "$name" "$work/$name-cg.json" "$work/$name.vg" "$work/$name.json" "$work/$name.time" <<'PY'
import json, re, sys
name, cg_summary, vg, summary, timef = sys.argv[1:]
cg = json.load(open(cg_summary))
ir = int(re.search(r"Collected : (\d+)", open(vg).read()).group(1))
s = json.load(open(summary))
user, sys_, maxrss_kb = open(timef).read().split()
cpu = float(user) + float(sys_)
rows = max(s["event_rows"], 1)
print(f"B13 {name:12s} {ir / cg['event_rows']:7.0f} instructions/row  {cpu / rows * 1e6:5.2f} us/row  "
      f"{s['bytes_per_event']:5.1f} B/event row  peak RSS {int(maxrss_kb) / 1024:5.1f} MiB  "
      f"{s['requests_per_s']:6.0f} req/s  errors {sum(s['errors'].values())}")
PY
}
echo "capture on 1 runtime thread, recap-sim on 1 thread, concurrency 16, 100 tokens per response;"
echo "callgrind over $n requests, wall clock over $((n * 10)); base = $base"
measure base "$work/capture-base"
measure raw-none "$target/release/capture" --raw none
measure raw-errors "$target/release/capture" --raw errors
measure raw-all "$target/release/capture"
