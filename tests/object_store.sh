#!/usr/bin/env bash
# Runs kept in object storage, analyzed in place: two captures against recap-sim (one of them
# sharded) are uploaded to two local object stores, moto's S3 server (PyPI) and Azurite's blob
# service (npm), and deleted here; `analyze report` and `analyze sql` then read them from s3://
# and az:// and must give what they gave on the local folders (tests/object_store_check.py).
# Usage: bash tests/object_store.sh OUT_DIR [PYTHON] [AZURITE_BLOB]
#   (binaries from `cargo build --workspace`; AZURITE_BLOB: the azurite-blob executable)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tests/object_store.sh OUT_DIR [PYTHON]}"
python="${2:-python3}"
azurite="${3:-azurite-blob}"
bin="${CARGO_TARGET_DIR:-target}/debug"
rm -rf "$out" && mkdir -p "$out"
# shellcheck source=tests/sim.sh
. tests/sim.sh
# One prompt in ten answered 500: error counts must survive the trip too.
start_sim "$bin/recap-sim" "$out/sim.out" --ttft 3ms --itl 1ms --output-tokens 12 --error-rate 0.1
"$python" tests/object_store_check.py "$bin" "$addr" "$out" "$azurite"
stop_sim
