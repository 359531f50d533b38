#!/usr/bin/env bash
# B6: timestamp fidelity. capture's first-token time (clock anchor + monotonic t_ns) minus the
# simulator's own wall-clock time just before it handed that first token to the socket, per
# request, at an open-loop rate, in one invocation. Errors include loopback transit and the
# client's scheduling delay: that is what is measured.
# Usage: bash bench/b6_fidelity.sh [RATE=1000] [REQUESTS=5000]
source "$(dirname "$0")/lib.sh"
rate="${1:-1000}"; n="${2:-5000}"
ensure_venv
build_release
python3 -c "
import json
with open('$work/prompts.jsonl', 'w') as f:
    for i in range($n):
        f.write(json.dumps({'prompt': f'fidelity prompt number {i}'}) + '\n')
"
start_sim --threads 1 --itl 1ms --output-tokens 5 --log "$work/sim.jsonl"
"${RECAP_CAPTURE_BIN:-$target/release/capture}" --url "http://$addr" --api completions --dataset "$work/prompts.jsonl" --out "$work/run" \
  --rate "$rate" --arrival constant --requests "$n" --max-in-flight 256 --threads 1 --quiet
stop_sim
"$venv/bin/python" - "$work/run" "$work/sim.jsonl" "$rate" <<'PY'
import json, sys, pathlib
import numpy as np
import pyarrow.dataset as ds
run, simlog, rate = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
anchor = json.loads((run / "manifest.json").read_text())["clock_anchor_unix_ns"]
M = (1 << 64) - 1
def fnv(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & M
    return h
sim = {}
for line in open(simlog):
    r = json.loads(line)
    if r["first_token_unix_ns"] is not None:
        sim[r["key_hash"]] = r["first_token_unix_ns"]
req = ds.dataset(str(run / "requests")).to_table(columns=["request_id", "prompt"]).to_pylist()
ev = ds.dataset(str(run / "events")).to_table(columns=["request_id", "kind", "t_ns", "seq", "content"]).to_pylist()
first = {}
for e in ev:
    if e["kind"] == "sse" and e["content"]:
        k = e["request_id"]
        if k not in first or e["seq"] < first[k][0]:
            first[k] = (e["seq"], e["t_ns"])
err = []
for r in req:
    h = fnv(r["prompt"])
    if r["request_id"] in first and h in sim:
        err.append(anchor + first[r["request_id"]][1] - sim[h])
err = np.array(err) / 1e3
print(f"B6 {len(err)} requests at {rate} req/s: capture first-token time minus sim send time: "
      f"p50 {np.percentile(err, 50):.0f} us, p99 {np.percentile(err, 99):.0f} us, max {err.max():.0f} us, "
      f"min {err.min():.0f} us (target p99 < 200 us)")
PY
