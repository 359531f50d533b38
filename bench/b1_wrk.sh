#!/usr/bin/env bash
# B1: non-streaming requests/s at concurrency 64, capture (recording everything) vs wrk,
# both against the same recap-sim on this machine, in one invocation.
# Usage: bash bench/b1_wrk.sh [DURATION_S=10] [CONCURRENCY=64]
source "$(dirname "$0")/lib.sh"
dur="${1:-10}"; conc="${2:-64}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
build_release
start_sim --threads 1 --output-tokens 16
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"m","messages":[{"role":"user","content":"Explain why the sky is blue in two sentences."}],"max_tokens":16,"stream":false}'
LUA
wrk_rps=$(wrk -t1 -c"$conc" -d"${dur}s" -s "$work/post.lua" "http://$addr/v1/chat/completions" | awk '/Requests\/sec/ {print $2}')
"$target/release/capture" --url "http://$addr" --out "$work/run" --no-stream --concurrency "$conc" \
  --duration "${dur}s" --threads 1 --max-tokens 16 --quiet --json >"$work/summary.json"
python3 - "$wrk_rps" "$work/summary.json" <<'PY'
import json, sys
wrk = float(sys.argv[1]); s = json.load(open(sys.argv[2]))
errors = sum(s["errors"].values())
print(f"B1 wrk (1 thread, c=64): {wrk:.0f} req/s | capture (1 thread, recording): {s['requests_per_s']:.0f} req/s, "
      f"{errors} errors | ratio {s['requests_per_s'] / wrk:.2f}x (target >= 0.8x)")
PY
