#!/usr/bin/env bash
# B15: what `capture --live` costs capture, per recorded event row, against the same capture
# without it, on B13's streaming workload (raw payloads on), in one invocation: with nobody
# watching, and with a subscriber on /stream plus a 10 Hz /metrics scraper (what a dashboard
# and Prometheus do). CPU is counted twice: instructions per row under callgrind (repeatable
# whatever the machine is doing) and user+sys time per row without it.
# Usage: bash bench/b15_live_cost.sh [REQUESTS=2000]
source "$(dirname "$0")/lib.sh"
n="${1:-2000}"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
if [ "${RECAP_BENCH_NO_BUILD:-0}" != 1 ]; then
  cargo build --release --quiet -p recap-capture -p recap-tests --bin capture --bin recap-sim
fi
bin="$target/release/capture"
start_sim --threads 1 --output-tokens 100 --prerender
watchers=()
# watch ERR_FILE: once capture names its live address, reads /stream and scrapes /metrics at
# 10 Hz until capture ends (the stream closes then, and the scraper stops on its first refusal).
watch() {
  local err="$1" url=""
  for _ in $(seq 1 600); do
    url="$(sed -n 's/.*live on \(http:[^ ]*\).*/\1/p' "$err" 2>/dev/null | head -n 1)"
    [ -n "$url" ] && break
    sleep 0.05
  done
  [ -n "$url" ] || return 0
  curl -sN "$url/stream" >/dev/null &
  while curl -sf "$url/metrics" >/dev/null; do sleep 0.1; done
  wait
}
measure() {
  local name="$1" watched="$2"; shift 2
  local err="$work/$name.err"
  : >"$err.vg"
  [ "$watched" = 1 ] && { watch "$err.vg" & watchers+=($!); }
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" "$bin" --url "http://$addr" \
    --out "$work/$name-cg" --concurrency 16 --requests "$n" --threads 1 --quiet --json "$@" \
    >"$work/$name-cg.json" 2>"$err.vg"
  : >"$err.2"
  [ "$watched" = 1 ] && { watch "$err.2" & watchers+=($!); }
  /usr/bin/time -f '%U %S' -o "$work/$name.time" "$bin" --url "http://$addr" \
    --out "$work/$name" --concurrency 16 --requests "$((n * 10))" --threads 1 --quiet --json "$@" \
    >"$work/$name.json" 2>"$err.2"
  python3 - "$name" "$work/$name-cg.json" "$err.vg" "$work/$name.json" "$work/$name.time" <<'PY'
import json, re, sys
name, cg_summary, vg, summary, timef = sys.argv[1:]
cg = json.load(open(cg_summary))
ir = int(re.search(r"Collected : (\d+)", open(vg).read()).group(1))
s = json.load(open(summary))
user, sys_ = open(timef).read().split()
rows = max(s["event_rows"], 1)
print(f"B15 {name:14s} {ir / cg['event_rows']:7.0f} instructions/row  {(float(user) + float(sys_)) / rows * 1e6:5.2f} us/row  "
      f"{s['requests_per_s']:6.0f} req/s  errors {sum(s['errors'].values())}")
PY
}
echo "capture on 1 runtime thread, recap-sim on 1 thread, concurrency 16, 100 tokens per response;"
echo "callgrind over $n requests, wall clock over $((n * 10))"
measure off 0
measure live 0 --live 127.0.0.1:0
# Renders follow the wall clock, and callgrind slows capture ~50x, so it renders ~50x more
# often per row than a real run does: at 0.1 Hz the figure is the per-event cost alone.
measure live-0.1hz 0 --live 127.0.0.1:0 --live-hz 0.1
measure live-watched 1 --live 127.0.0.1:0 --live-hz 10
for w in "${watchers[@]}"; do wait "$w" 2>/dev/null || true; done
