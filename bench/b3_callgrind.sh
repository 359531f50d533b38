#!/usr/bin/env bash
# B3, repeatably: instructions per recorded event row, counted by callgrind (instruction
# counts do not depend on how busy the machine is), for capture and optionally a second
# capture binary (another commit's build) on the same streaming workload, in one invocation.
# Usage: bash bench/b3_callgrind.sh [REQUESTS=2000] [OTHER_CAPTURE_BINARY]
source "$(dirname "$0")/lib.sh"
n="${1:-2000}"; other="${2:-}"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
build_release
start_sim --threads 1 --output-tokens 100 --prerender
measure() {
  local name="$1" bin="$2"
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" "$bin" --url "http://$addr" \
    --out "$work/$name" --concurrency 16 --requests "$n" --threads 1 --quiet --json >"$work/$name.json" 2>"$work/$name.vg"
  python3 - "$name" "$work/$name.json" "$work/$name.vg" <<'PY'
import json, re, sys
name, summary, vg = sys.argv[1:]
s = json.load(open(summary))
ir = int(re.search(r"Collected : (\d+)", open(vg).read()).group(1))
print(f"B3 {name}: {ir / 1e6:.0f} M instructions for {s['event_rows']:,} event rows "
      f"({sum(s['errors'].values())} errors) = {ir / s['event_rows']:.0f} instructions per row")
PY
}
measure this "$target/release/capture"
if [ -n "$other" ]; then measure other "$other"; fi
