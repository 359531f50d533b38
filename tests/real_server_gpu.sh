#!/usr/bin/env bash
# The GPU variant of tests/real_server.sh, for a session lent the device machine: builds
# llama.cpp's llama-server with CUDA there, serves a random-weight Qwen3 (0.6B shape) with
# --metrics, and runs Recap's capture against it with --scrape of its /metrics; the run
# folder (run.tgz) and the server's expositions come back in $OUT, to analyze here.
# Prepare here (ignored folder .device/, named in the device tool's `carry`):
#   mkdir -p .device && echo /.device/ >> .git/info/exclude
#   cp "$CARGO_TARGET_DIR/debug/capture" .device/capture && strip .device/capture && xz .device/capture
#   cp ../shared/realserver/llama.cpp-server-src.tar.xz ../shared/realserver/make_model.py .device/
# Then: device run `bash tests/real_server_gpu.sh` with carry [".device"] (about 4 min there).
set -uo pipefail
R=$PWD; W=/tmp/w; mkdir -p "$W"; cd "$W"
log() { echo "[$(date +%T)] $*"; }
log start; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
tar xJf "$R/.device/llama.cpp-server-src.tar.xz"
xz -dc "$R/.device/capture.xz" > capture && chmod +x capture && ./capture --version || exit 1
cmake -S lc -B lb -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DGGML_CUDA_NCCL=OFF -DGGML_CUDA_FA=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_APP=OFF > "$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build lb --target llama-server -j16 > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
log built
python3 "$R/.device/make_model.py" m "$R/fixtures/tokenizers/qwen3" || exit 1
python3 lc/convert_hf_to_gguf.py m --outfile m.gguf --outtype bf16 > conv.log 2>&1 || { tail -20 conv.log; exit 1; }
log converted
lb/bin/llama-server -m m.gguf --host 127.0.0.1 --port 8080 -ngl 99 -c 65536 --parallel 16 -n 64 \
  --cache-ram 0 --alias m --metrics > server.log 2>&1 &
for _ in $(seq 900); do curl -sf http://127.0.0.1:8080/health >/dev/null && break; sleep 0.2; done
log ready
curl -s -D "$OUT/metrics_headers.txt" http://127.0.0.1:8080/metrics > "$OUT/llamacpp_idle.prom"
./capture --url http://127.0.0.1:8080 --model m --out run --concurrency 16 --requests 400 \
  --warmup-requests 16 --max-tokens 64 --scrape http://127.0.0.1:8080/metrics \
  --scrape-interval 200ms --json > "$OUT/capture.json" 2> "$OUT/capture.err"
echo "capture rc=$?"
curl -s http://127.0.0.1:8080/metrics > "$OUT/llamacpp_after.prom"
log captured
tar czf "$OUT/run.tgz" run
ls -la "$OUT" run run/scrapes; tail -3 server.log; cat "$OUT/capture.err" | tail -5
