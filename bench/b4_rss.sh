#!/usr/bin/env bash
# B4: capture's peak RSS for the same streaming run at two sizes (default 100k and 1M
# requests, 100 tokens each, one token per SSE event), in one invocation. Target: <= 100 MB
# and flat. Usage: bash bench/b4_rss.sh [SMALL=100000] [LARGE=1000000] [TOKENS=100]
source "$(dirname "$0")/lib.sh"
small="${1:-100000}"; large="${2:-1000000}"; tokens="${3:-100}"
build_release
start_sim --threads 1 --output-tokens "$tokens" --prerender
for n in "$small" "$large"; do
  "$target/release/capture" --url "http://$addr" --out "$work/run$n" --concurrency 64 --requests "$n" \
    --threads 1 --quiet --json >"$work/s$n.json"
  du -sb "$work/run$n" | cut -f1 >"$work/du$n"
  rm -rf "$work/run$n"
done
python3 - "$work" "$small" "$large" <<'PY'
import json, sys
work, small, large = sys.argv[1:]
out = []
for n in (small, large):
    s = json.load(open(f"{work}/s{n}.json"))
    mib = s["peak_rss_bytes"] / 1048576
    errors = sum(s["errors"].values())
    disk = int(open(f"{work}/du{n}").read()) / 1048576
    print(f"B4 {int(n):>9,} requests: {s['event_rows']:,} events in {s['elapsed_s']:.0f} s "
          f"({s['requests_per_s']:.0f} req/s), {errors} errors, {disk:.0f} MiB on disk, peak RSS {mib:.1f} MiB")
    out.append(mib)
print(f"B4 peak RSS {out[1]:.1f} MiB at {int(large):,} vs {out[0]:.1f} MiB at {int(small):,} requests: "
      f"ratio {out[1] / out[0]:.2f} (target <= 100 MB and flat)")
PY
