#!/usr/bin/env bash
# B5: bytes on disk per SSE event in Recap's Parquet vs the same events as JSON lines
# (the events table exported by DuckDB), in one invocation.
# Usage: bash bench/b5_bytes.sh [REQUESTS=2000] [TOKENS=100]
source "$(dirname "$0")/lib.sh"
n="${1:-2000}"; tokens="${2:-100}"
ensure_venv
build_release
start_sim --threads 1 --output-tokens "$tokens"
"$target/release/capture" --url "http://$addr" --out "$work/run" --concurrency 64 --requests "$n" --quiet
"$venv/bin/python" - "$work/run" <<'PY'
import duckdb, pathlib, sys
run = pathlib.Path(sys.argv[1])
parquet = sum(p.stat().st_size for p in run.rglob("*.parquet"))
con = duckdb.connect()
events = con.execute(f"SELECT count(*) FROM read_parquet('{run}/events/*.parquet')").fetchone()[0]
sse = con.execute(f"SELECT count(*) FROM read_parquet('{run}/events/*.parquet') WHERE kind = 'sse'").fetchone()[0]
out = run / "events.jsonl"
con.execute(f"COPY (SELECT * FROM read_parquet('{run}/events/*.parquet')) TO '{out}' (FORMAT JSON)")
req = run / "requests.jsonl"
con.execute(f"COPY (SELECT * FROM read_parquet('{run}/requests/*.parquet')) TO '{req}' (FORMAT JSON)")
jsonl = out.stat().st_size + req.stat().st_size
print(f"B5 {events} event rows ({sse} SSE): Parquet {parquet / sse:.1f} B per SSE event, "
      f"JSON lines {jsonl / sse:.1f} B per SSE event | ratio {parquet / jsonl:.3f} (target <= 0.1)")
PY
