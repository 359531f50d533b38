# Shared helpers for bench scripts: release build, start/stop recap-sim by PID.
# Sourced, not run. Every benchmark talks to 127.0.0.1 only and stops what it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"
work="$(mktemp -d)"
sim_pid=""
cleanup() {
  if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# build_release: the workspace in release mode. RECAP_BENCH_NO_BUILD=1 skips it and uses the
# binaries already in $CARGO_TARGET_DIR/release (say so when publishing a figure).
build_release() {
  if [ "${RECAP_BENCH_NO_BUILD:-0}" = 1 ]; then
    for b in analyze capture recap-sim; do
      [ -x "$target/release/$b" ] || { echo "RECAP_BENCH_NO_BUILD=1 but $target/release/$b is missing" >&2; exit 1; }
    done
    local built=""
    for b in analyze capture recap-sim; do built+=" $b $(date -r "$target/release/$b" '+%F %T'),"; done
    echo "build skipped (RECAP_BENCH_NO_BUILD=1): in $target/release,${built%,}" >&2
    return
  fi
  cargo build --workspace --release --quiet
}

# start_sim ARGS...: starts recap-sim (release) on a free port; sets $addr. RECAP_SIM=BINARY
# serves from another build of it (the one an issue's figures were measured against, say).
start_sim() {
  "${RECAP_SIM:-$target/release/recap-sim}" --port 0 "$@" >"$work/sim.out" 2>&1 &
  sim_pid=$!
  for _ in $(seq 1 200); do grep -q '^listening on ' "$work/sim.out" 2>/dev/null && break; sleep 0.05; done
  addr="$(sed -n 's/^listening on //p' "$work/sim.out" | head -n 1)"
  [ -n "$addr" ] || { cat "$work/sim.out" >&2; exit 1; }
}

# start_b3_sim whole|flushed: recap-sim as B3's server (100 one-token events per answer,
# pre-rendered): each answer in one write, or each event in a chunked frame of its own.
start_b3_sim() {
  local flags=(--threads 1 --output-tokens 100 --prerender)
  [ "$1" = flushed ] && flags+=(--flush-each-event)
  start_sim "${flags[@]}"
}

# callgrind_per_row LABEL BIN CAPTURE_FLAGS...: BIN (a capture binary) against $addr under
# callgrind, one runtime thread; prints LABEL and its instructions per recorded event row.
callgrind_per_row() {
  local label="$1" bin="$2"; shift 2
  local out
  out="$(mktemp -u -p "$work" cg.XXXXXX)"
  valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$bin" --url "http://$addr" \
    --out "$out" --threads 1 --quiet --json "$@" >"$out.json" 2>"$out.vg"
  python3 - "$label" "$out.json" "$out.vg" <<'PY'
import json, re, sys
label, summary, vg = sys.argv[1:]
s = json.load(open(summary))
ir = int(re.search(r"Collected : (\d+)", open(vg).read()).group(1))
print(f"{label}: {ir / 1e6:.0f} M instructions for {s['event_rows']:,} event rows "
      f"({sum(s['errors'].values())} errors) = {ir / s['event_rows']:.0f} instructions per row")
PY
  rm -rf "$out" "$out.cg"
}

stop_sim() {
  kill "$sim_pid" 2>/dev/null || true
  wait "$sim_pid" 2>/dev/null || true
  sim_pid=""
}

# ensure_venv: the venv CI also uses, with what .ci/run installs (pyarrow, duckdb, numpy,
# pandas, tokenizers, jinja2); sets $venv.
ensure_venv() {
  venv="${RECAP_CI_VENV:-$HOME/.cache/recap/venv}"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pyarrow, duckdb, numpy, pandas, tokenizers, jinja2' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check pyarrow duckdb numpy pandas tokenizers jinja2
  fi
}
