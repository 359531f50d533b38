"""docs/cluster/recap_spark.py over a folder of runs, checked against analyze (tests/spark.sh).

Captures four runs against recap-sim (three concurrencies and one sharded run), scores each
with `analyze report`, runs the Spark recipe in local mode over the folder, and requires each
run's request count and TTFT p50/p90/p99 to equal its summary.json.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER = os.path.join(ROOT, "fixtures", "tokenizers", "gpt2", "tokenizer.json.gz")


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}: {p.stderr}"
    return p.stdout


def main():
    bin_dir, addr, out = sys.argv[1:4]
    capture, analyze = os.path.join(bin_dir, "capture"), os.path.join(bin_dir, "analyze")
    runs = os.path.join(out, "runs")
    url = f"http://{addr}"
    for c in (1, 4, 16):
        run([capture, "--url", url, "--concurrency", str(c), "--requests", "96", "--out", os.path.join(runs, f"c{c}"), "--quiet"])
    for i in range(2):
        run([capture, "--url", url, "--shard", f"{i}/2", "--concurrency", "8", "--requests", "64",
             "--out", os.path.join(runs, "sharded"), "--quiet"])
    summaries = {}
    for name in sorted(os.listdir(runs)):
        s = json.loads(run([analyze, "report", os.path.join(runs, name), "--tokenizer", TOKENIZER, "--json", "--quiet"]))[0]
        summaries[name] = s

    spec = importlib.util.spec_from_file_location("recap_spark", os.path.join(ROOT, "docs", "cluster", "recap_spark.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("recap-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    # Spark warns (with a stack trace) that a glob is not a metadata folder; errors still show.
    spark.sparkContext.setLogLevel("ERROR")
    try:
        rows = {r["run"]: r.asDict() for r in recipe.per_run(spark, runs).collect()}
    finally:
        spark.stop()
    assert sorted(rows) == sorted(summaries), (sorted(rows), sorted(summaries))
    for name, s in summaries.items():
        r = rows[name]
        assert r["requests"] == s["requests"]["total"], (name, r, s["requests"])
        for p in ("p50", "p90", "p99"):
            want, got = s["metrics"]["ttft_ms"][p], r[f"ttft_{p}_ms"]
            assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), (name, p, got, want)
        print(f"{name}: {r['requests']} requests, ttft p99 {r['ttft_p99_ms']:.3f} ms (Spark) = {s['metrics']['ttft_ms']['p99']:.3f} ms (summary.json)")
    print("spark: OK")


if __name__ == "__main__":
    main()
