#!/usr/bin/env bash
# Opt-in real-server test: records streaming chat load against a real llama.cpp
# `llama-server` on 127.0.0.1 (CPU, tiny random-weight model with the real Qwen3
# tokenizer) at several concurrencies, scores every run with `analyze`, prints per
# concurrency the requests, error rows by kind, new connections, retries and the token
# agreement between the tokenizer and the server's usage, and exits non-zero if any
# request errored.
#
# Usage: bash tests/real_server.sh            # full run (first run builds llama-server, 15-25 min on 2 cores)
#        bash tests/real_server.sh --build-only   # only build/cache llama-server and the model
#
# Needs: python3 (with venv), a C/C++ compiler, curl, the package registry for pip
# (cmake, ninja, numpy) on first use, and the Recap binaries (cargo build --workspace).
#
# Environment (all optional):
#   RECAP_REAL_SERVER_SRC        llama.cpp source tarball
#                                (default: $REPO/../shared/realserver/llama.cpp-server-src.tar.xz)
#   RECAP_REAL_SERVER_CACHE      cache folder for venv, build and model
#                                (default: $HOME/.cache/recap/real-server)
#   RECAP_REAL_SERVER_OUT        run folders (default: $REPO/runs/real-server)
#   RECAP_BIN                    folder with capture/analyze
#                                (default: ${CARGO_TARGET_DIR:-$HOME/.cache/recap/target}/debug,
#                                 else $REPO/target/debug)
#   RECAP_CAPTURE_BIN            capture binary to test, e.g. one built from an older commit
#                                (default: $RECAP_BIN/capture; analyze always from RECAP_BIN)
#   RECAP_REAL_SERVER_CONC       concurrencies (default: "1 8 32")
#   RECAP_REAL_SERVER_REQUESTS   requests per concurrency (default: 200)
#   RECAP_REAL_SERVER_MAX_TOKENS output tokens per request (default: 32)
#   RECAP_REAL_SERVER_JOBS       build parallelism (default: 2)
#   RECAP_REAL_SERVER_TIMEOUT    seconds one capture may take before it is killed (default: 600)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
SRC_TAR="${RECAP_REAL_SERVER_SRC:-$REPO/../shared/realserver/llama.cpp-server-src.tar.xz}"
CACHE="${RECAP_REAL_SERVER_CACHE:-$HOME/.cache/recap/real-server}"
OUT="${RECAP_REAL_SERVER_OUT:-$REPO/runs/real-server}"
CONCS="${RECAP_REAL_SERVER_CONC:-1 8 32}"
REQUESTS="${RECAP_REAL_SERVER_REQUESTS:-200}"
MAX_TOKENS="${RECAP_REAL_SERVER_MAX_TOKENS:-32}"
JOBS="${RECAP_REAL_SERVER_JOBS:-2}"
CAPTURE_TIMEOUT="${RECAP_REAL_SERVER_TIMEOUT:-600}"
TOKENIZER="$REPO/fixtures/tokenizers/qwen3/tokenizer.json.gz"
TOKENIZER_CONFIG="$REPO/fixtures/tokenizers/qwen3/tokenizer_config.json"

build_only=0
case "${1:-}" in
  --build-only) build_only=1 ;;
  "") ;;
  -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

log() { echo "==> $*" >&2; }
die() { echo "real_server: $*" >&2; exit 1; }

# ---------------------------------------------------------------- toolchain (venv)
[ -f "$SRC_TAR" ] || die "llama.cpp source tarball not found: $SRC_TAR (set RECAP_REAL_SERVER_SRC)"
mkdir -p "$CACHE"
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/cmake" ] || [ ! -x "$VENV/bin/ninja" ] \
   || ! "$VENV/bin/python" -c 'import numpy, yaml' 2>/dev/null; then
  log "creating build venv in $VENV (cmake, ninja, numpy, pyyaml)"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  # pyyaml and tqdm: imported by the tarball's gguf-py, which make_gguf.py loads from source.
  "$VENV/bin/pip" install --quiet cmake ninja numpy pyyaml tqdm
fi
PY="$VENV/bin/python"

# ---------------------------------------------------------------- llama-server build (cached)
# Keyed by the tarball's checksum, so a new source gets a fresh build.
src_key="$(sha256sum "$SRC_TAR" | cut -c1-12)"
LLAMA_DIR="$CACHE/llama-$src_key"
# The SIMD levels this CPU has, read from /proc/cpuinfo rather than assumed (an AVX-512 build
# dies with "Illegal instruction" on an AVX2-only machine), and kept in the build's folder
# name so a cache built on another CPU is not reused.
cpu_has() { if grep -qw "$1" /proc/cpuinfo 2>/dev/null; then echo ON; else echo OFF; fi; }
simd=(-DGGML_AVX="$(cpu_has avx)" -DGGML_AVX2="$(cpu_has avx2)" -DGGML_FMA="$(cpu_has fma)"
  -DGGML_F16C="$(cpu_has f16c)" -DGGML_BMI2="$(cpu_has bmi2)" -DGGML_AVX512="$(cpu_has avx512f)")
BUILD_DIR="$LLAMA_DIR/build-$(printf '%s' "${simd[*]}" | sha256sum | cut -c1-8)"
SERVER_BIN="$BUILD_DIR/bin/llama-server"
if [ ! -d "$LLAMA_DIR/lc" ]; then
  log "unpacking $SRC_TAR into $LLAMA_DIR"
  rm -rf "$LLAMA_DIR.tmp" && mkdir -p "$LLAMA_DIR.tmp"
  tar xJf "$SRC_TAR" -C "$LLAMA_DIR.tmp"
  [ -f "$LLAMA_DIR.tmp/lc/CMakeLists.txt" ] || die "unexpected tarball layout (no lc/CMakeLists.txt)"
  mkdir -p "$LLAMA_DIR"
  mv "$LLAMA_DIR.tmp/lc" "$LLAMA_DIR/lc" && rm -rf "$LLAMA_DIR.tmp"
fi
if [ -x "$SERVER_BIN" ]; then
  log "llama-server cached: $SERVER_BIN"
else
  log "building llama-server (CPU, -j$JOBS; 15-25 minutes on 2 cores; log: $BUILD_DIR.log; ${simd[*]})"
  extra=()
  # Options that exist only in some llama.cpp versions.
  grep -q 'option(LLAMA_BUILD_APP' "$LLAMA_DIR/lc/CMakeLists.txt" && extra+=(-DLLAMA_BUILD_APP=OFF)
  grep -q 'option(LLAMA_CURL' "$LLAMA_DIR/lc/CMakeLists.txt" && extra+=(-DLLAMA_CURL=OFF)
  start=$(date +%s)
  {
    PATH="$VENV/bin:$PATH" "$VENV/bin/cmake" -S "$LLAMA_DIR/lc" -B "$BUILD_DIR" -G Ninja \
      -DCMAKE_BUILD_TYPE=Release -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
      -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF "${simd[@]}" \
      -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF ${extra[@]+"${extra[@]}"} \
    && PATH="$VENV/bin:$PATH" "$VENV/bin/cmake" --build "$BUILD_DIR" --target llama-server -j"$JOBS"
  } >"$BUILD_DIR.log" 2>&1 || { tail -n 40 "$BUILD_DIR.log" >&2; die "llama-server build failed"; }
  [ -x "$SERVER_BIN" ] || die "build finished but $SERVER_BIN is missing"
  log "llama-server built in $(( $(date +%s) - start )) s"
fi

# ---------------------------------------------------------------- tiny model (cached)
# Keyed by the generator, the tokenizer and the gguf-py source it is written with.
model_key="$(cat "$REPO/tests/real_server/make_gguf.py" "$TOKENIZER" "$TOKENIZER_CONFIG" "$SRC_TAR" | sha256sum | cut -c1-12)"
MODEL="$CACHE/tiny-qwen3-$model_key.gguf"
if [ ! -s "$MODEL" ]; then
  log "writing the tiny random-weight model $MODEL"
  "$PY" "$REPO/tests/real_server/make_gguf.py" --gguf-py "$LLAMA_DIR/lc/gguf-py" \
    --tokenizer "$TOKENIZER" --tokenizer-config "$TOKENIZER_CONFIG" --out "$MODEL.tmp"
  mv "$MODEL.tmp" "$MODEL"
fi
log "model: $MODEL ($(du -h "$MODEL" | cut -f1))"

[ "$build_only" = 1 ] && { log "build only: done"; exit 0; }

# ---------------------------------------------------------------- Recap binaries
if [ -n "${RECAP_BIN:-}" ]; then BIN="$RECAP_BIN"
elif [ -x "${CARGO_TARGET_DIR:-$HOME/.cache/recap/target}/debug/capture" ]; then
  BIN="${CARGO_TARGET_DIR:-$HOME/.cache/recap/target}/debug"
else BIN="$REPO/target/debug"; fi
CAPTURE="${RECAP_CAPTURE_BIN:-$BIN/capture}"
ANALYZE="$BIN/analyze"
for b in "$CAPTURE" "$ANALYZE"; do
  [ -x "$b" ] || die "$b not found: run 'cargo build --workspace' first (or set RECAP_BIN)"
done
log "recap binaries: $CAPTURE, $ANALYZE"

# ---------------------------------------------------------------- llama-server
max_conc=1
for c in $CONCS; do [ "$c" -gt "$max_conc" ] && max_conc=$c; done
CTX=$(( max_conc * 512 ))   # 512 tokens per slot: prompt (templated, < 100) + output
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"
mkdir -p "$OUT"
SERVER_LOG="$OUT/llama-server.log"
server_flags=(-m "$MODEL" --host 127.0.0.1 --port "$PORT" -t 2 -c "$CTX" --parallel "$max_conc" --alias m)
help="$("$SERVER_BIN" --help 2>&1 || true)"
if grep -q -- '--cache-ram' <<<"$help"; then server_flags+=(--cache-ram 0)
else log "this llama-server has no --cache-ram; running without it"; fi

log "starting llama-server on $URL (slots $max_conc, context $CTX; log: $SERVER_LOG)"
"$SERVER_BIN" "${server_flags[@]}" >"$SERVER_LOG" 2>&1 &
server_pid=$!
cleanup() {
  if kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ready=0
for _ in $(seq 1 240); do   # up to ~60 s
  kill -0 "$server_pid" 2>/dev/null || { tail -n 40 "$SERVER_LOG" >&2; die "llama-server exited during start-up"; }
  if curl -sf -o /dev/null --max-time 2 "$URL/health"; then ready=1; break; fi
  sleep 0.25
done
[ "$ready" = 1 ] || { tail -n 40 "$SERVER_LOG" >&2; die "llama-server not healthy after 60 s"; }
log "llama-server ready (pid $server_pid)"

BODY_EXTRA='{"ignore_eos": true, "stream_options": {"include_usage": true}}'

# One streamed response, raw, for the record (headers, last events, connection handling).
curl -sN -v --max-time 60 "$URL/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "m", "stream": true, "max_tokens": 8, "ignore_eos": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Say hello."}]}' \
  >"$OUT/wire-body.txt" 2>"$OUT/wire-trace.txt" || die "curl of one streamed response failed (see $OUT/wire-trace.txt)"
log "one raw streamed response: $OUT/wire-trace.txt (headers) and $OUT/wire-body.txt (events); response headers:"
sed -n 's/^< //p' "$OUT/wire-trace.txt" | tr -d '\r' | sed 's/^/      /' >&2
grep -E '^\* .*(onnection|closing)' "$OUT/wire-trace.txt" | sed 's/^/      /' >&2 || true
# Does the server keep the connection it advertises as kept alive? (raw socket, bounded)
"$PY" "$REPO/tests/real_server/wire_probe.py" "$PORT" >"$OUT/wire-probe.txt" 2>&1 \
  || log "wire probe failed (not part of the verdict)"
log "keep-alive probe ($OUT/wire-probe.txt):"
sed 's/^/      /' "$OUT/wire-probe.txt" >&2

# ---------------------------------------------------------------- captures
labels=()
for c in $CONCS; do
  run="$OUT/c$c"
  log "capture: $REQUESTS streaming chat requests at concurrency $c into $run"
  t0=$(date +%s)
  rc=0
  timeout --signal=INT --kill-after=30 "$CAPTURE_TIMEOUT" \
    "$CAPTURE" --url "$URL" --api chat --model m --out "$run" --force \
      --concurrency "$c" --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" \
      --timeout 60s --body-extra "$BODY_EXTRA" --quiet || rc=$?
  log "capture c$c: exit $rc after $(( $(date +%s) - t0 )) s"
  kill -0 "$server_pid" 2>/dev/null || { tail -n 40 "$SERVER_LOG" >&2; die "llama-server died during the c$c run"; }
  labels+=(--label "c$c" "$run")
done

# ---------------------------------------------------------------- figures
log "analyze: scoring every run with the Qwen3 tokenizer ($TOKENIZER)"
rc=0
"$PY" "$REPO/tests/real_server/report.py" --analyze "$ANALYZE" --tokenizer "$TOKENIZER" \
  --json-out "$OUT/figures.json" "${labels[@]}" || rc=$?
exit "$rc"
