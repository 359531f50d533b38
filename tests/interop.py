"""Reads a Recap run folder with pyarrow and DuckDB, as outside scripts would.

Usage: python tests/interop.py RUN_DIR
Checks the documented columns exist, every request has exactly one terminal event,
and both readers agree on the counts. Exits non-zero with a message otherwise.
"""
import json
import pathlib
import sys

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq

run = pathlib.Path(sys.argv[1])
manifest = json.loads((run / "manifest.json").read_text())
events = ds.dataset(str(run / "events"), format="parquet").to_table()
requests = ds.dataset(str(run / "requests"), format="parquet").to_table()

for col in ["request_id", "kind", "t_ns", "seq", "content", "reasoning",
            "usage_prompt_tokens", "usage_completion_tokens", "error_kind"]:
    assert col in events.column_names, f"events lacks {col}"
for col in ["request_id", "scheduled_ns", "prompt", "messages_json", "phase"]:
    assert col in requests.column_names, f"requests lacks {col}"

first = sorted((run / "events").glob("*.parquet"))[0]
meta = pq.read_metadata(first).metadata
assert meta[b"recap.schema_version"] == str(manifest["schema_version"]).encode(), meta
assert meta[b"recap.run_id"] == manifest["run_id"].encode(), meta

con = duckdb.connect()
glob = str(run / "events" / "*.parquet")
n_requests = con.execute(f"SELECT count(*) FROM read_parquet('{run}/requests/*.parquet')").fetchone()[0]
bad = con.execute(f"""
    SELECT count(*) FROM (
      SELECT request_id, count(*) FILTER (WHERE kind IN ('done','error','cancelled')) AS t
      FROM read_parquet('{glob}') GROUP BY request_id) WHERE t <> 1""").fetchone()[0]
kinds = dict(con.execute(f"SELECT kind, count(*) FROM read_parquet('{glob}') GROUP BY kind").fetchall())

assert n_requests == requests.num_rows == manifest["counts"]["requests"], (n_requests, requests.num_rows)
assert events.num_rows == sum(kinds.values()) == manifest["counts"]["events"]
assert bad == 0, f"{bad} requests without exactly one terminal event"
print(f"pyarrow+duckdb: {n_requests} requests, {events.num_rows} events, kinds {kinds}")

# Version 3, the lossless record: the raw payloads are there and DuckDB's own JSON functions
# find in them exactly the content capture extracted.
if manifest["schema_version"] >= 3:
    for col in ["raw", "sse_event", "choice_index", "usage_cached_tokens", "timings_prompt_ms",
                "timings_predicted_ms", "response_headers_json"]:
        assert col in events.column_names, f"events lacks {col}"
    for col in ["client_request_id", "server_request_id"]:
        assert col in requests.column_names, f"requests lacks {col}"
    with_raw, differ = con.execute(f"""
        SELECT count(*),
               count(*) FILTER (WHERE content IS DISTINCT FROM coalesce(
                   json_extract_string(raw, '$.choices[0].delta.content'),
                   json_extract_string(raw, '$.choices[0].text'),
                   json_extract_string(raw, '$.choices[0].message.content')))
        FROM read_parquet('{glob}')
        WHERE kind = 'sse' AND raw <> '[DONE]' AND error_kind IS NULL AND content IS NOT NULL""").fetchone()
    assert with_raw > 0 and differ == 0, (with_raw, differ)
    print(f"duckdb json: content of {with_raw} SSE rows equals what their raw payloads say")

# analyze's exact percentiles agree with numpy's default (linear) on its own metrics.parquet.
import math
import numpy as np
for summary_path in sorted((run / "analysis").glob("*/summary.json")):
    summary = json.loads(summary_path.read_text())
    m = pq.read_table(summary_path.parent / "metrics.parquet").to_pandas()
    ok = m[(m["phase"] == "measure") & (m["ok"])]
    for col, name in [("ttft_ns", "ttft_ms"), ("e2e_ns", "e2e_ms"), ("tpot_ns", "tpot_ms")]:
        values = ok[col].dropna().to_numpy(dtype="float64") / 1e6
        for stat, q in [("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9)]:
            want = float(np.percentile(values, q))
            got = summary["metrics"][name][stat]
            assert abs(got - want) <= 1e-9 * max(1.0, abs(want)), (name, stat, got, want)
        assert abs(summary["metrics"][name]["std"] - float(np.std(values))) <= 1e-9 * max(1.0, float(np.std(values)))
    print(f"numpy agrees with {summary_path.parent.name}: percentiles and std of ttft, e2e, tpot")
    # The percentile intervals: the order statistics the binomial law picks, computed here
    # from the pmf through lgamma (not analyze's walk from the mode).
    def ranks(n, q, conf=0.95):
        tail = (1 - conf) / 2
        lq, l1q = math.log(q), math.log1p(-q)
        cdf, acc = [], 0.0
        for k in range(n + 1):
            acc += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lq + (n - k) * l1q)
            cdf.append(acc)
        lo = [x for x in range(n) if cdf[x] <= tail]
        hi = [x for x in range(n) if cdf[x] >= 1 - tail]
        return (lo[-1], hi[0]) if lo and hi else None
    checked = 0
    for col, name in [("ttft_ns", "ttft_ms"), ("e2e_ns", "e2e_ms"), ("tpot_ns", "tpot_ms")]:
        values = np.sort(ok[col].dropna().to_numpy(dtype="float64") / 1e6)
        got = summary["metrics"][name].get("intervals", {})
        for stat, q in [("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99), ("p99_9", 99.9)]:
            want = ranks(len(values), q / 100)
            if want is None:
                assert stat not in got, (name, stat, "too few samples for an interval")
                continue
            lo, hi = got[stat]
            assert (abs(lo - values[want[0]]) <= 1e-9 * max(1.0, lo) and abs(hi - values[want[1]]) <= 1e-9 * max(1.0, hi)), (name, stat, got[stat], values[want[0]], values[want[1]])
            checked += 1
    assert checked >= 9, checked
    # The rates' intervals: 20 equal blocks of the window, requests counted by their end;
    # the blocks' mean is the reported rate, and a bootstrap of 20 blocks spreads about
    # 1.96 · std/sqrt(20) each way (numpy here, analyze's bootstrap there).
    measure = m[m["phase"] == "measure"]
    start, end = measure["sent_ns"].min(), measure["end_ns"].max()
    blocks = np.minimum(((ok["end_ns"] - start) / (end - start) * 20).astype(int), 19)
    block_s = (end - start) / 1e9 / 20
    for name, weights in [("requests_per_s", np.ones(len(ok))), ("output_tokens_per_s", ok["osl_tokens"].to_numpy(dtype="float64"))]:
        rates = np.bincount(blocks, weights=weights, minlength=20) / block_s
        assert abs(rates.mean() - summary[name]) <= 1e-6 * summary[name], (name, rates.mean(), summary[name])
        lo, hi = summary["rate_intervals"][name]
        half = 1.96 * rates.std() / math.sqrt(20)
        assert lo <= summary[name] <= hi, (name, lo, hi)
        assert abs((hi - lo) / 2 - half) <= 0.25 * half, (name, lo, hi, half)
    print(f"rates of {summary_path.parent.name}: 20-block means equal the reported rates; intervals about ±1.96·sd/sqrt(20)")
    # series.parquet, second by second, recomputed with pandas from metrics.parquet.
    s = pq.read_table(summary_path.parent / "series.parquet").to_pandas()
    sec = 1_000_000_000
    nbins = int((end - start) // sec) + 1
    assert len(s) == nbins, (len(s), nbins)
    assert list(s["t_s"]) == [float(b) for b in range(nbins)]
    done_bin = ((ok["end_ns"] - start) // sec).clip(upper=nbins - 1)
    want_done = np.bincount(done_bin, minlength=nbins)
    want_tokens = np.bincount(done_bin, weights=ok["osl_tokens"].to_numpy(dtype="float64"), minlength=nbins)
    failed = measure[~measure["ok"] & measure["end_ns"].notna()]
    want_errors = np.bincount(((failed["end_ns"] - start) // sec).clip(upper=nbins - 1).astype(int), minlength=nbins)
    mids = start + np.arange(nbins) * sec + sec // 2
    sent, ended = measure["sent_ns"].to_numpy(), measure["end_ns"].to_numpy(dtype="float64")
    want_flight = [int(((sent <= mid) & (np.isnan(ended) | (ended > mid))).sum()) for mid in mids]
    first_bin = ((ok["first_token_ns"] - start) // sec).clip(upper=nbins - 1)
    want_ttft = (ok["ttft_ns"] / 1e6).groupby(first_bin).mean()
    assert list(s["requests_done"]) == list(want_done), (list(s["requests_done"]), list(want_done))
    assert np.allclose(s["output_tokens_per_s"], want_tokens), (list(s["output_tokens_per_s"]), list(want_tokens))
    assert list(s["errors"]) == list(want_errors)
    assert list(s["in_flight"]) == want_flight, (list(s["in_flight"]), want_flight)
    for b, v in want_ttft.items():
        assert abs(s["ttft_ms_mean"][int(b)] - v) <= 1e-9 * v, (b, s["ttft_ms_mean"][int(b)], v)
    print(f"series.parquet of {summary_path.parent.name}: {nbins} seconds, every column recomputed with pandas")
    print(f"{checked} percentile intervals of {summary_path.parent.name} are the order statistics the binomial law picks")
    # The steady state (--window steady), recomputed with pandas: from the first measured end
    # to the last measured send; rates over requests ending inside, latencies over those
    # sent and ended inside.
    if "steady" in summary:
        st = summary["steady"]
        t0, t1 = measure["end_ns"].min(), measure["sent_ns"].max()
        assert abs(st["start_s"] - (t0 - start) / 1e9) < 1e-9 and abs(st["end_s"] - (t1 - start) / 1e9) < 1e-9, st
        ended = measure[(measure["end_ns"] >= t0) & (measure["end_ns"] <= t1)]
        inside = ended[(ended["sent_ns"] >= t0) & (ended["sent_ns"] <= t1)]
        good = ended[ended["ok"]]
        window = (t1 - t0) / 1e9
        assert st["requests_ended"] == len(ended) and st["requests_inside"] == len(inside), st
        assert abs(st["requests_per_s"] - len(good) / window) <= 1e-9 * st["requests_per_s"]
        assert abs(st["output_tokens_per_s"] - good["osl_tokens"].sum() / window) <= 1e-9 * st["output_tokens_per_s"]
        for col, name in [("ttft_ns", "ttft_ms"), ("e2e_ns", "e2e_ms")]:
            values = inside[inside["ok"]][col].dropna().to_numpy(dtype="float64") / 1e6
            for stat, q in [("p50", 50), ("p99", 99)]:
                want = float(np.percentile(values, q))
                assert abs(st["metrics"][name][stat] - want) <= 1e-9 * max(1.0, want), (name, stat)
        print(f"steady state of {summary_path.parent.name}: {window:.3f} s, {len(inside)} requests inside, recomputed with pandas")
