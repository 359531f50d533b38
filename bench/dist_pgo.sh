#!/usr/bin/env bash
# The distribution build of capture, profile-guided: `--profile dist` built instrumented
# (`-Cprofile-generate`), run on a training workload against recap-sim (B3's two servers,
# the Messages and Responses APIs, reasoning, mid-stream errors and resets), then rebuilt
# with what those runs recorded (`-Cprofile-use`): LLVM lays out and inlines the per-event
# path for the branches it actually takes. Then B3's instructions per row (callgrind, c=16,
# REQUESTS answers, both servers) for it and for the plain dist build, in this invocation.
# Writes $CARGO_TARGET_DIR/dist-pgo/capture (instrumented and final builds get target folders
# of their own under $CARGO_TARGET_DIR: other RUSTFLAGS rebuild every crate).
# Needs llvm-profdata of the toolchain's LLVM: `rustup component add llvm-tools` if missing.
# Usage: bash bench/dist_pgo.sh [REQUESTS=1000]
source "$(dirname "$0")/lib.sh"
n="${1:-1000}"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }

host="$(rustc -vV | sed -n 's/^host: //p')"
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
[ -x "$profdata" ] || rustup component add llvm-tools
[ -x "$profdata" ] || { echo "no $profdata (rustup component add llvm-tools failed)" >&2; exit 1; }

abs_target="$(mkdir -p "$target" && cd "$target" && pwd)"
profiles="$abs_target/pgo-profiles"
out="$abs_target/dist-pgo"
rm -rf "$profiles" && mkdir -p "$profiles" "$out"

dist_build() { # TARGET_DIR EXTRA_RUSTFLAGS
  CARGO_TARGET_DIR="$1" RUSTFLAGS="${RUSTFLAGS:-} $2" \
    cargo build --profile dist --quiet -p recap-capture --bin capture
}
cargo build --release --quiet -p recap-tests --bin recap-sim
cargo build --profile dist --quiet -p recap-capture --bin capture
dist_build "$abs_target/pgo-generate" "-Cprofile-generate=$profiles"

# train SIM_FLAGS... -- CAPTURE_FLAGS...: one run of the instrumented build.
train() {
  local sim=()
  while [ "$1" != "--" ]; do sim+=("$1"); shift; done
  shift
  start_sim --threads 1 --output-tokens 100 "${sim[@]}"
  rm -rf "$work/train"
  LLVM_PROFILE_FILE="$profiles/capture-%p.profraw" "$abs_target/pgo-generate/dist/capture" \
    --url "http://$addr" --out "$work/train" --threads 1 --quiet "$@"
  stop_sim
}
train --prerender -- --concurrency 64 --duration 4s
train --prerender --flush-each-event -- --concurrency 64 --duration 4s
train --prerender -- --concurrency 16 --duration 2s
train --prerender -- --concurrency 64 --duration 2s --api messages --max-tokens 100
train --prerender -- --concurrency 64 --duration 2s --api responses
train --reasoning 20 --stream-error-rate 0.01 --reset-rate 0.01 -- --concurrency 32 --duration 2s
"$profdata" merge -o "$profiles/capture.profdata" "$profiles"/*.profraw

dist_build "$abs_target/pgo-use" "-Cprofile-use=$profiles/capture.profdata"
cp "$abs_target/pgo-use/dist/capture" "$out/capture"
echo "wrote $out/capture ($(stat -c %s "$out/capture") bytes)"

for mode in whole flushed; do
  start_b3_sim "$mode"
  callgrind_per_row "$mode, dist" "$target/dist/capture" --concurrency 16 --requests "$n"
  callgrind_per_row "$mode, dist + PGO" "$out/capture" --concurrency 16 --requests "$n"
  stop_sim
done
