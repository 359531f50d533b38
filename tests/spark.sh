#!/usr/bin/env bash
# A folder of runs queried where it lies by Spark (pyspark in local mode, PyPI's; Java from
# Debian's default-jre-headless): docs/cluster/recap_spark.py's per-run request counts and TTFT
# percentiles must equal each run's summary.json (tests/spark_check.py).
# Usage: bash tests/spark.sh OUT_DIR [PYTHON]   (binaries from `cargo build --workspace`)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tests/spark.sh OUT_DIR [PYTHON]}"
python="${2:-python3}"
bin="${CARGO_TARGET_DIR:-target}/debug"
rm -rf "$out" && mkdir -p "$out"
# Spark in local mode, on loopback only.
export SPARK_LOCAL_IP=127.0.0.1
# shellcheck source=tests/sim.sh
. tests/sim.sh
# TTFT rising with the requests in flight: the runs' percentiles differ, so a mix-up shows.
start_sim "$bin/recap-sim" "$out/sim.out" --ttft 2ms --ttft-per-running 2ms --itl 1ms --output-tokens 6 --error-rate 0.05
"$python" tests/spark_check.py "$bin" "$addr" "$out"
stop_sim
