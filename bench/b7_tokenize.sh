#!/usr/bin/env bash
# B7: analyze's token counting against the tokenizers crate on the same texts
# (plain 1-thread loop and rayon par_iter), in one invocation (a release bench binary).
# Usage: bash bench/b7_tokenize.sh [TOKENIZER.json(.gz)] [TEXTS=5000] [BYTES_PER_TEXT=3000]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --workspace --bench tokenize -- "$@"
