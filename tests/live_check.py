"""`capture --live` read as other processes read it, while two captures run against recap-sim.

- `/metrics` of capture A, scraped every 100 ms and parsed by prometheus_client's text parser:
  every counter is monotone, every histogram's buckets are cumulative and end at its count;
- `/stream` of capture A: the states arrive in order (live, draining, complete), the snapshots
  are numbered in order, and the last one is `live.json`;
- `live.json` equals the manifest's counts;
- the live TTFT and E2E percentiles agree with analyze's (`--ttft-on output`, `--e2e-end done`)
  within the histogram's stated precision, and the gap histogram holds exactly the gaps between
  output events read from the events table by pyarrow;
- `plot --live A,B` under tmux shows the sum of both captures' counters and the percentiles of
  their merged histograms (merged here, by hand, from the two live.json files);
- `plot --live S0` given only shard 0 of a two-shard capture finds shard 1 on shard 0's
  `/shards` and shows both shards ended, their `sent` summed.

Usage: python tests/live_check.py BIN_DIR SIM_ADDR OUT_DIR
"""

import glob
import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import pyarrow.compute as pc
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families

BIN, SIM, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
STATES = ["live", "draining", "complete"]
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def wait_until(what, probe, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = probe()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def start_capture(name, concurrency, requests, out=None, extra=()):
    """Capture into OUT/`out` (default: `name`) with a live endpoint: the process and its address."""
    err = open(os.path.join(OUT, f"{name}.err"), "w")
    p = subprocess.Popen(
        [f"{BIN}/capture", "--url", f"http://{SIM}", "--out", os.path.join(OUT, out or name), "--quiet",
         "--concurrency", str(concurrency), "--requests", str(requests), "--live", "127.0.0.1:0", *extra],
        stdout=subprocess.DEVNULL, stderr=err)

    def addr():
        m = re.search(r"live on http://(\S+)", open(err.name).read())
        if m is None and p.poll() is not None:
            raise SystemExit(f"capture {name} exited before publishing: {open(err.name).read()}")
        return m and m.group(1)

    return p, wait_until(f"capture {name}'s live address", addr)


if shutil.which("tmux") is None:
    raise SystemExit("tmux is needed for the dashboard test (Debian package tmux)")
os.makedirs(OUT, exist_ok=True)
cap_a, addr_a = start_capture("a", 4, 120)
cap_b, addr_b = start_capture("b", 2, 50)
session = f"recap-live-{os.getpid()}"
subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                f"{BIN}/plot --live {addr_a},{addr_b}"], check=True)

snapshots, scrapes = [], []


def cleanup(session, procs):
    """Stops what a part of this check started (at exit: also when a check fails)."""
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


import atexit  # noqa: E402

# Arguments bound now: `session` names another tmux session by the time the shards run.
atexit.register(cleanup, session, (cap_a, cap_b))


def read_stream():
    host, port = addr_a.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    c.request("GET", "/stream")
    r = c.getresponse()
    data = []
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            snapshots.append(json.loads("".join(data)))
            data = []


def scrape():
    while cap_a.poll() is None:
        try:
            text = urllib.request.urlopen(f"http://{addr_a}/metrics", timeout=5).read().decode()
        except OSError:
            break  # the capture is ending
        if text:
            scrapes.append(list(text_string_to_metric_families(text)))
        time.sleep(0.1)


threads = [threading.Thread(target=read_stream), threading.Thread(target=scrape)]
for t in threads:
    t.start()
check(cap_a.wait(timeout=120) == 0, "capture a exit status")
check(cap_b.wait(timeout=120) == 0, "capture b exit status")
for t in threads:
    t.join(timeout=30)
check(not any(t.is_alive() for t in threads), "/stream closed when capture ended")

run_a, run_b = os.path.join(OUT, "a"), os.path.join(OUT, "b")
live_a = json.load(open(os.path.join(run_a, "live.json")))
live_b = json.load(open(os.path.join(run_b, "live.json")))
manifest = json.load(open(os.path.join(run_a, "manifest.json")))

# /stream: states in order, numbered, the last one on disk too.
states = [s["state"] for s in snapshots]
check(states and all(STATES.index(a) <= STATES.index(b) for a, b in zip(states, states[1:])),
      f"states out of order: {states}")
check(set(states) == set(STATES), f"every state arrives: {sorted(set(states))}")
check([s["seq"] for s in snapshots] == sorted(s["seq"] for s in snapshots), "snapshots numbered in order")
check(snapshots and snapshots[-1] == live_a, "the stream's last snapshot is live.json")

# live.json equals the manifest's counts.
mc, lc = manifest["counts"], live_a["counts"]
for k in ["done", "errors", "cancelled", "sse_events", "connections", "stale_connections", "retries",
          "recorder_waits", "recorder_wait_ns"]:
    check(mc[k] == lc[k], f"live.json {k} {lc[k]} != manifest {mc[k]}")
check(lc["sent"] == mc["requests"] and lc["in_flight"] == 0, "sent and in flight at the end")
check(lc["errors"].get("http_status", 0) > 0 and lc["done"] > 0, f"the sim's 500s are counted: {lc['errors']}")

# /metrics: counters monotone, histograms cumulative, nothing past the final counts.
check(len(scrapes) >= 5, f"scraped /metrics {len(scrapes)} times")
previous = {}
for families in scrapes:
    for fam in families:
        if fam.type == "counter":
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                check(s.value >= previous.get(key, 0), f"{key} went down")
                previous[key] = s.value
        if fam.type == "histogram":
            buckets = [s.value for s in fam.samples if s.name.endswith("_bucket")]
            count = [s.value for s in fam.samples if s.name.endswith("_count")][0]
            check(buckets == sorted(buckets) and buckets[-1] == count, f"{fam.name} buckets cumulative")
final = {
    "recap_capture_requests_sent_total": lc["sent"],
    "recap_capture_requests_done_total": lc["done"],
    "recap_capture_sse_events_total": lc["sse_events"],
}
for name, v in final.items():
    check(name in {k[0] for k in previous} and previous[(name, ())] <= v, f"{name} <= its final value")
errs = [s.value for f in scrapes[-1] if f.name == "recap_capture_request_errors" for s in f.samples
        if s.labels.get("kind") == "http_status"]
check(errs and errs[0] > 0, f"/metrics counts errors by kind: {errs}")
names = {f.name for f in scrapes[-1]}
for want in ["recap_capture_ttft_seconds", "recap_capture_e2e_seconds", "recap_capture_inter_chunk_gap_seconds",
             "recap_capture_request_errors", "recap_capture_requests_in_flight", "recap_capture_run_state"]:
    check(want in names, f"/metrics has {want}")


# Live percentiles against analyze's, within the HDR precision (3 significant digits: a
# reported value is its bucket's highest equivalent, at most 1/1024 above the sample).
def rank_value(values, q):
    values = sorted(values)
    return values[max(1, math.ceil(q * len(values))) - 1]


def within(live_ms, sample_us):
    live_us = live_ms * 1000.0
    return sample_us - 0.5 <= live_us <= sample_us * (1 + 1 / 1024) + 1.5


subprocess.run([f"{BIN}/analyze", "report", run_a, "--tokenizer", "fixtures/tokenizers/gpt2/tokenizer.json.gz",
                "-q", "--ttft-on", "output", "--e2e-end", "done"], check=True)
metrics = pq.read_table(glob.glob(os.path.join(run_a, "analysis", "*", "metrics.parquet"))[0]).to_pylist()
ok = [m for m in metrics if m["ok"]]
ttft_us = [max(1, m["ttft_ns"] // 1000) for m in ok]
e2e_us = [max(1, m["e2e_ns"] // 1000) for m in ok]
check(live_a["ttft"]["count"] == len(ttft_us) and live_a["e2e"]["count"] == len(e2e_us), "sample counts")
# Every scrape's TTFT buckets: at most the final samples at or under each bound (a bucket
# counted too high, or a bound in the wrong unit, shows here).
for families in scrapes:
    for fam in families:
        if fam.name != "recap_capture_ttft_seconds":
            continue
        for s in fam.samples:
            if s.name.endswith("_bucket") and s.labels["le"] != "+Inf":
                le_us = float(s.labels["le"]) * 1e6
                check(s.value <= sum(1 for v in ttft_us if v <= le_us * (1 + 1 / 1024)),
                      f"ttft bucket le={s.labels['le']}: {s.value} over the samples under it")
for q, key in [(0.5, "p50_ms"), (0.9, "p90_ms"), (0.99, "p99_ms")]:
    for name, values in [("ttft", ttft_us), ("e2e", e2e_us)]:
        v = rank_value(values, q)
        check(within(live_a[name][key], v), f"{name} {key}: live {live_a[name][key]} ms vs analyze {v} us")

# Gaps between output events, from the events table itself.
events = pq.read_table(os.path.join(run_a, "events")).to_pylist()
by_request = {}
for e in sorted(events, key=lambda e: (e["request_id"], e["t_ns"])):
    if e["kind"] == "sse" and ((e["content"] or "") or (e["reasoning"] or "") or e["tool_calls_json"]):
        by_request.setdefault(e["request_id"], []).append(e["t_ns"])
gaps_us = [max(1, (b - a) // 1000) for ts in by_request.values() for a, b in zip(ts, ts[1:])]
check(live_a["gap"]["count"] == len(gaps_us), f"gap count {live_a['gap']['count']} vs {len(gaps_us)}")
for q, key in [(0.5, "p50_ms"), (0.99, "p99_ms")]:
    v = rank_value(gaps_us, q)
    check(within(live_a["gap"][key], v), f"gap {key}: live {live_a['gap'][key]} vs events {v} us")


# The dashboard: both captures merged, by hand here.
def merged_quantile(buckets, q):
    n = sum(buckets.values())
    need, seen = max(1, math.ceil(q * n)), 0
    for v in sorted(buckets):
        seen += buckets[v]
        if seen >= need:
            return v / 1000.0


def screen():
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


text = wait_until("the dashboard to show both captures complete",
                  lambda: (lambda s: s if "state complete" in s and s.count("(ended)") == 2 else None)(screen()),
                  timeout=30)
print(text)


def shown(label):
    m = re.search(r"│" + re.escape(label) + r"\s+([0-9.]+)", text)
    return m and m.group(1)


ca, cb = live_a["counts"], live_b["counts"]
check(shown("errors") == str(sum(ca["errors"].values()) + sum(cb["errors"].values())), "dashboard errors")
for label, key in [("sent", "sent"), ("done", "done"), ("sse events", "sse_events"),
                   ("output tokens", "usage_output_tokens"), ("connections", "connections")]:
    check(shown(label) == str(ca[key] + cb[key]), f"dashboard {label}: {shown(label)} vs {ca[key] + cb[key]}")
for name in ["ttft", "gap", "e2e"]:
    buckets = {}
    for live in (live_a, live_b):
        for v, n in live[name]["buckets"]:
            buckets[v] = buckets.get(v, 0) + n
    want = [str(sum(buckets.values()))] + [f"{merged_quantile(buckets, q):.1f}" for q in (0.5, 0.9, 0.99)] + \
           [f"{max(buckets) / 1000.0:.1f}"]
    m = re.search(r"│" + name + r"\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    check(m is not None and list(m.groups()) == want, f"dashboard {name}: {m and m.groups()} vs {want}")
subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
wait_until("the dashboard to quit on q",
           lambda: subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0,
           timeout=10)


# A sharded capture watched through shard 0 alone: `plot --live` finds shard 1 on shard 0's
# `/shards` (named at the barrier) and shows both as one.
def start_shard(i, barrier):
    return start_capture(f"shard{i}", 4, 80, out="sharded", extra=["--shard", f"{i}/2", "--barrier", barrier])


shard0, addr0 = start_shard(0, "http://127.0.0.1:9")
session = f"recap-live-shards-{os.getpid()}"
subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                f"{BIN}/plot --live {addr0}"], check=True)
shard1, _ = start_shard(1, f"http://{addr0}")

atexit.register(cleanup, session, (shard0, shard1))
for p in (shard0, shard1):
    p.wait(timeout=120)
text = wait_until("the dashboard to show both shards complete",
                  lambda: (lambda s: s if "state complete" in s and s.count("(ended)") == 2 else None)(screen()),
                  timeout=30)
print(text)
lives = [json.load(open(os.path.join(OUT, "sharded", "shards", str(i), "live.json"))) for i in range(2)]
want = sum(l["counts"]["sent"] for l in lives)
check(want == 80, f"the shards sent {want} of 80")
check(shown("sent") == str(want), f"sharded dashboard sent: {shown('sent')} vs {want} (shard 0 alone: {lives[0]['counts']['sent']})")
subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)

if failures:
    raise SystemExit(f"{len(failures)} live check(s) failed")
print(f"live: {len(snapshots)} snapshots ({' -> '.join(dict.fromkeys(states))}), {len(scrapes)} scrapes, "
      f"dashboard matched the merged captures")
