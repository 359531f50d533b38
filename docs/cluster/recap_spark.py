"""Many Recap runs on Spark: per-run request counts and TTFT percentiles, where the runs live.

    spark-submit docs/cluster/recap_spark.py RUNS [--tokenizer-id ID] [--out FILE.json]
    (or python3 with pyspark installed: local mode on this machine)

RUNS is a folder (or an s3a://, gs://, abfss:// prefix Spark can read) holding run folders as
capture and analyze write them: `RUNS/<run>/requests/*.parquet` (a sharded run:
`RUNS/<run>/shards/<i>/requests/*.parquet`) and `RUNS/<run>/analysis/<tokenizer-id>/metrics.parquet`
from `analyze report`. Nothing is converted: Spark reads the Parquet as written. The percentiles
are Spark's exact `percentile` (linear interpolation between closest ranks), the definition
`summary.json` uses (docs/metrics.md), over the successful measure-phase requests.
"""

import argparse
import json
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

# The run folder of a `requests` segment (plain or sharded) and of a `metrics.parquet`.
REQUESTS_RUN = r"/([^/]+)/(?:shards/[0-9]+/)?requests/[^/]+\.parquet$"
METRICS_RUN = r"/([^/]+)/analysis/[^/]+/metrics\.parquet$"


def per_run(spark, runs, tokenizer_id="*"):
    """One row per run: `run`, `requests` (rows of `requests`), and TTFT p50/p90/p99 in ms."""
    root = runs.rstrip("/")
    requests = (
        spark.read.option("recursiveFileLookup", "false")
        .parquet(f"{root}/*/requests/*.parquet", f"{root}/*/shards/*/requests/*.parquet")
        if has_shards(spark, root)
        else spark.read.parquet(f"{root}/*/requests/*.parquet")
    )
    counts = (
        requests.select(F.regexp_extract(F.input_file_name(), REQUESTS_RUN, 1).alias("run"))
        .groupBy("run")
        .agg(F.count(F.lit(1)).alias("requests"))
    )
    metrics = spark.read.parquet(f"{root}/*/analysis/{tokenizer_id}/metrics.parquet")
    ttft = (
        metrics.where((F.col("phase") == "measure") & F.col("ok") & F.col("ttft_ns").isNotNull())
        .select(
            F.regexp_extract(F.input_file_name(), METRICS_RUN, 1).alias("run"),
            (F.col("ttft_ns") / F.lit(1e6)).alias("ttft_ms"),
        )
        .groupBy("run")
        .agg(
            F.percentile("ttft_ms", F.lit(0.5)).alias("ttft_p50_ms"),
            F.percentile("ttft_ms", F.lit(0.9)).alias("ttft_p90_ms"),
            F.percentile("ttft_ms", F.lit(0.99)).alias("ttft_p99_ms"),
        )
    )
    return counts.join(ttft, "run", "left").orderBy("run")


def has_shards(spark, root):
    """Whether any run under `root` is sharded (Spark fails on a glob that matches nothing)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(f"{root}/*/shards")
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(fs.globStatus(path))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs")
    ap.add_argument("--tokenizer-id", default="*")
    ap.add_argument("--out", help="write the rows as JSON here")
    a = ap.parse_args()
    spark = SparkSession.builder.appName("recap-runs").getOrCreate()
    rows = [r.asDict() for r in per_run(spark, a.runs, a.tokenizer_id).collect()]
    spark.stop()
    text = json.dumps(rows, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    sys.exit(main())
