#!/usr/bin/env bash
# The cluster recipes of docs/cluster/ run as they are, on one machine: the Kubernetes Indexed
# Job's containers (its command and variables, read from the YAML) and the Slurm script (with
# stand-ins for srun and scontrol) each launch four shards against recap-sim, and analyze reads
# each run folder as one run (tests/shards_check.py).
# Usage: bash tests/shards.sh OUT_DIR [PYTHON]   (binaries from `cargo build --workspace`)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tests/shards.sh OUT_DIR [PYTHON]}"
python="${2:-python3}"
bin="${CARGO_TARGET_DIR:-target}/debug"
rm -rf "$out" && mkdir -p "$out"
# shellcheck source=tests/sim.sh
. tests/sim.sh
# TTFT rises 1 ms per running request: merged shards that did not run together would show it.
start_sim "$bin/recap-sim" "$out/sim.out" --ttft 2ms --ttft-per-running 1ms --itl 1ms --output-tokens 8
"$python" tests/shards_check.py "$bin" "$addr" "$out"
stop_sim
