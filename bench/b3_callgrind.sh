#!/usr/bin/env bash
# B3, repeatably: capture's work per recorded event row (raw payloads on, the default) on a
# streaming workload (100 one-token SSE events per answer), for this build and optionally a
# second capture binary (another commit's build), in one invocation, against two servers:
#   whole    `recap-sim --prerender`: each answer's events in one large write;
#   flushed  `recap-sim --prerender --flush-each-event`: each event in its own chunked frame,
#            written on its own, as servers that flush per token send them.
# Two measures per pair: instructions per row counted by callgrind (c=16, REQUESTS requests:
# independent of how busy the machine is), and CPU seconds (user+sys) per row of a timed run
# without valgrind (c=64, SECONDS each; the builds alternate, three rounds unless
# RECAP_B3_ROUNDS says otherwise, medians, and with two builds the median of this build's
# time over the other's, round by round).
# Usage: bash bench/b3_callgrind.sh [REQUESTS=2000] [OTHER_CAPTURE_BINARY] [SECONDS=5]
# RECAP_B3_THIS=BINARY measures that capture binary as "this" instead of the release build
# (the profile-guided distribution build of `bench/dist_pgo.sh`, say). RECAP_B3_MODES (default
# "whole flushed") and RECAP_B3_ROUNDS (default 3) choose the servers and the timed rounds;
# with RECAP_SIM (bench/lib.sh) an older recap-sim serves, `RECAP_B3_MODES=whole` where it
# predates `--flush-each-event`.
source "$(dirname "$0")/lib.sh"
n="${1:-2000}"; other="${2:-}"; secs="${3:-5}"
read -r -a modes <<<"${RECAP_B3_MODES:-whole flushed}"
rounds="${RECAP_B3_ROUNDS:-3}"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
build_release
bins=("this=${RECAP_B3_THIS:-$target/release/capture}")
[ -n "$other" ] && bins+=("other=$other")

cpu_per_row() {
  local name="$1" bin="$2"
  /usr/bin/time -f '%U %S' -o "$work/$name.time" "$bin" --url "http://$addr" --out "$work/$name" \
    --concurrency 64 --duration "${secs}s" --threads 1 --quiet --json >"$work/$name.json"
  python3 - "$work/$name.json" "$work/$name.time" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
u, k = map(float, open(sys.argv[2]).read().split())
print(f"{(u + k) / max(s['event_rows'], 1) * 1e6:.3f} {s['sse_events_per_s']:.0f} {sum(s['errors'].values())}")
PY
}

for mode in "${modes[@]}"; do
  start_b3_sim "$mode"
  for b in "${bins[@]}"; do callgrind_per_row "B3 $mode-${b%%=*}" "${b#*=}" --concurrency 16 --requests "$n"; done
  for _ in $(seq "$rounds"); do
    for b in "${bins[@]}"; do
      rm -rf "$work/cpu-$mode-${b%%=*}"
      echo "$(cpu_per_row "cpu-$mode-${b%%=*}" "${b#*=}")" >>"$work/cpu-$mode-${b%%=*}.rounds"
    done
  done
  for b in "${bins[@]}"; do
    python3 - "$mode-${b%%=*}" "$work/cpu-$mode-${b%%=*}.rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[2]) if l.strip()]
us = sorted(float(r[0]) for r in rows)
ev = [float(r[1]) for r in rows]
err = sum(int(r[2]) for r in rows)
print(f"B3 (CPU) {sys.argv[1]}: user+sys per row {statistics.median(us):.3f} us "
      f"(runs {', '.join(f'{u:.3f}' for u in us)}), {statistics.median(ev):,.0f} SSE events/s, {err} errors")
PY
  done
  if [ -n "$other" ]; then
    python3 - "$mode" "$work/cpu-$mode-this.rounds" "$work/cpu-$mode-other.rounds" <<'PY'
import statistics, sys
this, other = ([float(l.split()[0]) for l in open(f) if l.strip()] for f in sys.argv[2:])
ratios = [t / o for t, o in zip(this, other)]
print(f"B3 (CPU) {sys.argv[1]}: this / other, paired by round: median {statistics.median(ratios):.3f} "
      f"(rounds {', '.join(f'{r:.3f}' for r in ratios)})")
PY
  fi
  stop_sim
done
