#!/usr/bin/env bash
# How fast capture records against recap-sim on this machine (release build).
# Runs a streaming and a non-streaming load for DURATION each and prints capture's own
# summary (requests/s, SSE events/s, bytes per event, peak RSS) plus its CPU time per event.
# Usage: bash bench/capture_throughput.sh [DURATION=10s] [CONCURRENCY=64] [TOKENS=100]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10s}"; conc="${2:-64}"; tokens="${3:-100}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --workspace --release --quiet
work="$(mktemp -d)"
trap 'kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
"$target/release/recap-sim" --port 0 --threads 1 --output-tokens "$tokens" >"$work/sim.out" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do grep -q '^listening on ' "$work/sim.out" && break; sleep 0.05; done
addr="$(sed -n 's/^listening on //p' "$work/sim.out" | head -n 1)"

run() {
  local name="$1"; shift
  /usr/bin/time -f '%U %S %M' -o "$work/$name.time" \
    "$target/release/capture" --url "http://$addr" --out "$work/$name" --quiet --json \
      --concurrency "$conc" --duration "$duration" --threads 1 "$@" >"$work/$name.json"
  python3 - "$name" "$work/$name.json" "$work/$name.time" "$work/$name" <<'PY'
import json, sys, pathlib
name, summary, timef, run = sys.argv[1:]
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
