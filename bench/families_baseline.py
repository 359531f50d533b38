"""Baseline for B11: Python `tokenizers` `encode_batch_fast` on the output texts of a run.

Usage: python bench/families_baseline.py RUN_DIR TOKENIZER.json[.gz] [THREADS]

Reads the run's `events` segments with pyarrow, reassembles each request's streamed content in
`seq` order (the texts `analyze` counts as output), encodes them all in one batch and prints
JSON on one line: texts, bytes, tokens and the encode time (reading and reassembling are not
timed: only the tokenizer's work is, which flatters the baseline).
"""
import glob
import gzip
import json
import os
import sys
import time

import pyarrow.parquet as pq
from tokenizers import Tokenizer

run, path = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3:
    os.environ["RAYON_NUM_THREADS"] = sys.argv[3]
raw = gzip.decompress(open(path, "rb").read()) if path.endswith(".gz") else open(path, "rb").read()
tok = Tokenizer.from_str(raw.decode())

pieces = {}
for seg in sorted(glob.glob(os.path.join(run, "events", "*.parquet"))):
    t = pq.read_table(seg, columns=["request_id", "kind", "seq", "content"]).to_pydict()
    for rid, kind, seq, content in zip(t["request_id"], t["kind"], t["seq"], t["content"]):
        if kind == "sse" and content:
            pieces.setdefault(rid, []).append((seq, content))
texts = ["".join(c for _, c in sorted(v)) for _, v in sorted(pieces.items())]

start = time.perf_counter()
encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
elapsed = time.perf_counter() - start
print(json.dumps({
    "texts": len(texts),
    "bytes": sum(len(t.encode()) for t in texts),
    "tokens": sum(len(e.ids) for e in encodings),
    "encode_s": elapsed,
}))
