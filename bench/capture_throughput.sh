#!/usr/bin/env bash
# B3/B4 context: how fast capture records against recap-sim (release), its CPU time per
# recorded event row and its peak RSS, streaming and non-streaming, chat and the typed-event
# APIs (Responses, Messages), in one invocation.
# Usage: bash bench/capture_throughput.sh [DURATION=10s] [CONCURRENCY=64] [TOKENS=100]
source "$(dirname "$0")/lib.sh"
duration="${1:-10s}"; conc="${2:-64}"; tokens="${3:-100}"
build_release
start_sim --threads 1 --output-tokens "$tokens" --prerender

run() {
  local name="$1"; shift
  /usr/bin/time -f '%U %S %M' -o "$work/$name.time" \
    "$target/release/capture" --url "http://$addr" --out "$work/$name" --quiet --json \
      --concurrency "$conc" --duration "$duration" --threads 1 "$@" >"$work/$name.json"
  python3 - "$name" "$work/$name.json" "$work/$name.time" <<'PY'
import json, sys
name, summary, timef = sys.argv[1:]
s = json.load(open(summary))
user, sys_, maxrss_kb = open(timef).read().split()
cpu = float(user) + float(sys_)
events = max(s["event_rows"], 1)
print(f"{name:10s} {s['requests_per_s']:9.0f} req/s {s['sse_events_per_s']:10.0f} SSE ev/s "
      f"errors {sum(s['errors'].values())}  {s['bytes_per_event']:.1f} B/event  "
      f"CPU {cpu:.2f}s = {cpu / events * 1e6:.2f} us/event row  peak RSS {int(maxrss_kb) / 1024:.1f} MiB")
PY
}
echo "capture on 1 runtime thread, recap-sim on 1 thread, concurrency $conc, $tokens tokens/response, $duration each"
run stream
run nostream --no-stream
# The typed-event APIs: more events per answer (items opened and closed, the text repeated in
# `*.done` events), each parsed by its own module.
run responses --api responses
run messages --api messages
