#!/usr/bin/env python3
"""Figures of the real-server runs: per run, the requests, error rows by kind, new
connections, retries and tokenizer-vs-server token agreement; then one line per run.

Reads each run's manifest.json, scores it with `analyze report --json` and counts events
with `analyze sql`. Works on runs written before and after capture recorded `connect` /
`retry` events (schema versions 1 and 2): absent kinds count as 0 and the connection count
falls back to the distinct `requests.connection_id`.

Exit status: 0 when every request of every run ended `done`, 1 when any errored (or a run
is missing / incomplete), 2 when analyze itself failed.

Usage: report.py --analyze BIN --tokenizer TOKENIZER [--label c1 RUN] [--label c8 RUN] ...
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def sql(analyze: str, run: Path, query: str) -> list[dict]:
    """Rows of `analyze sql --format json`."""
    out = subprocess.run([analyze, "-q", "sql", "--format", "json", str(run), query], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def fmt(x, spec: str = "") -> str:
    return "-" if x is None else format(x, spec)


def figures(analyze: str, tokenizer: str, label: str, run: Path) -> dict:
    man = json.loads((run / "manifest.json").read_text())
    counts = man.get("counts", {})
    rep = subprocess.run([analyze, "-q", "report", str(run), "--tokenizer", tokenizer, "--json"],
                         check=True, capture_output=True, text=True).stdout
    summ = json.loads(rep)[0]  # always an array, one summary per run

    kinds = {r["kind"]: int(r["n"]) for r in sql(analyze, run,
             "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind")}
    err_rows = {r["error_kind"]: int(r["n"]) for r in sql(analyze, run,
                "SELECT error_kind, count(*) AS n FROM events WHERE kind = 'error' "
                "GROUP BY error_kind ORDER BY error_kind")}
    conn_ids = int(sql(analyze, run, "SELECT count(DISTINCT connection_id) AS n FROM requests")[0]["n"])
    # Messages with their numbers (connection ids, byte counts) folded, so alike ones group.
    samples = sql(analyze, run,
                  "SELECT kind, error_kind, substr(regexp_replace(replace(error_message, '|', '/'), '[0-9]+', 'N', 'g'), 1, 160) AS msg, "
                  "count(*) AS n FROM events WHERE kind IN ('error', 'retry') GROUP BY kind, error_kind, msg "
                  "ORDER BY n DESC LIMIT 4")

    # Per-request (tokenizer - server) output-token differences, as a histogram.
    try:
        osl_hist = {int(r["diff"]): int(r["n"]) for r in sql(analyze, run,
                    "SELECT CAST(tokenizer_output_tokens AS BIGINT) - CAST(server_completion_tokens AS BIGINT) AS diff, "
                    "count(*) AS n FROM metrics WHERE server_completion_tokens IS NOT NULL GROUP BY 1 ORDER BY 1")}
    except (subprocess.CalledProcessError, ValueError, KeyError):
        osl_hist = {}
    osl, isl = summ.get("osl_agreement", {}), summ.get("isl_agreement", {})
    return {
        "label": label,
        "run": str(run),
        "status": man.get("status"),
        "requests": counts.get("requests"),
        "done": counts.get("done"),
        "errors": counts.get("errors", {}),
        "error_rows": err_rows,
        "event_kinds": kinds,
        "connect_rows": kinds.get("connect", 0),
        "connection_ids": conn_ids,
        "manifest_connections": counts.get("connections"),
        "manifest_stale_connections": counts.get("stale_connections"),
        "retry_rows": kinds.get("retry", 0),
        "manifest_retries": counts.get("retries"),
        "keep_alive_stopped": counts.get("keep_alive_stopped"),
        "osl_agreement": osl,
        "osl_diff_histogram": osl_hist,
        "isl_agreement": isl,
        "window_s": summ.get("window_s"),
        "requests_per_s": summ.get("requests_per_s"),
        "output_tokens_per_s": summ.get("output_tokens_per_s"),
        "ttft_p50_ms": summ.get("metrics", {}).get("ttft_ms", {}).get("p50"),
        "error_samples": samples,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--analyze", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--label", nargs=2, action="append", metavar=("LABEL", "RUN"), required=True)
    ap.add_argument("--json-out", help="also write all figures here")
    a = ap.parse_args()

    rows, failed = [], False
    for label, run in a.label:
        run = Path(run)
        if not (run / "manifest.json").is_file():
            print(f"[{label}] {run}: no manifest.json (capture did not run)", file=sys.stderr)
            failed = True
            continue
        try:
            f = figures(a.analyze, a.tokenizer, label, run)
        except subprocess.CalledProcessError as e:
            print(f"[{label}] analyze failed: {' '.join(e.cmd)}\n{e.stderr}", file=sys.stderr)
            return 2
        rows.append(f)
        errs = sum(f["errors"].values()) if f["errors"] else 0
        if errs or f["status"] != "complete" or f["done"] != f["requests"]:
            failed = True
        print(f"\n[{label}] {run}  status={f['status']}")
        print(f"  requests {f['requests']}, done {f['done']}, errors by kind (manifest) {f['errors'] or '{}'}"
              f", error rows by kind (events) {f['error_rows'] or '{}'}")
        print(f"  connections: distinct connection_id {f['connection_ids']}, `connect` rows {f['connect_rows']}"
              f" (manifest connections {fmt(f['manifest_connections'])},"
              f" stale {fmt(f['manifest_stale_connections'])})")
        rate = f["retry_rows"] / f["requests"] if f["requests"] else 0.0
        print(f"  retries: `retry` rows {f['retry_rows']} (manifest {fmt(f['manifest_retries'])}), "
              f"retry rate {rate:.1%}; keep-alive given up: {f['keep_alive_stopped']}")
        o, i = f["osl_agreement"], f["isl_agreement"]
        print(f"  output-token agreement (tokenizer vs usage.completion_tokens): compared {o.get('compared')}, "
              f"equal {fmt(o.get('share_equal'), '.1%')}, mean diff {fmt(o.get('mean_diff'), '+.2f')}, "
              f"max |diff| {fmt(o.get('max_abs_diff'))}; requests by diff "
              f"{{{', '.join(f'{d:+d}: {n}' for d, n in f['osl_diff_histogram'].items()) or '-'}}}")
        print(f"  input-token agreement (tokenizer+template vs usage.prompt_tokens): compared {i.get('compared')}, "
              f"equal {fmt(i.get('share_equal'), '.1%')}, mean diff {fmt(i.get('mean_diff'), '+.2f')}, "
              f"max |diff| {fmt(i.get('max_abs_diff'))}")
        print(f"  window {fmt(f['window_s'], '.1f')} s, {fmt(f['requests_per_s'], '.1f')} req/s, "
              f"{fmt(f['output_tokens_per_s'], '.0f')} output tok/s, TTFT p50 {fmt(f['ttft_p50_ms'], '.1f')} ms")
        print(f"  event rows by kind: {f['event_kinds']}")
        for s in f["error_samples"]:
            print(f"  {s.get('n')} x `{s.get('kind')}` row, {s.get('error_kind')}: {s.get('msg')}")

    if a.json_out:
        Path(a.json_out).write_text(json.dumps(rows, indent=2) + "\n")

    print("\n  run  status      requests  done  errors                      conns  connect  retries  osl_equal  osl_mean_diff  isl_equal   req/s")
    for f in rows:
        errs = ",".join(f"{k}={v}" for k, v in sorted(f["errors"].items())) or "none"
        o, i = f["osl_agreement"], f["isl_agreement"]
        print(f"  {f['label']:<4} {f['status'] or '?':<10}  {f['requests']:>8}  {f['done']:>4}  {errs:<26}  {f['connection_ids']:>5}  "
              f"{f['connect_rows']:>7}  {f['retry_rows']:>7}  {fmt(o.get('share_equal'), '>9.1%')}  "
              f"{fmt(o.get('mean_diff'), '>+13.2f')}  {fmt(i.get('share_equal'), '>9.1%')}  "
              f"{fmt(f['requests_per_s'], '>6.1f')}")
    print("  (llama.cpp's Qwen3 chat parser strips the leading space of the first content delta, e.g.\n"
          "   token ' repar' arrives as 'repar', which re-tokenizes to 1-2 more tokens: expect output\n"
          "   diffs of 0/+1/+2 per request with this model; the other 31 words agree exactly)")
    print("RESULT: " + ("FAIL (requests errored or runs incomplete)" if failed else "PASS (no request errored)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
