"""Baseline for B10: vLLM's `random` dataset recipe with Hugging Face `tokenizers`.

Usage: python bench/dataset_baseline.py TOKENIZER.json.gz COUNT ISL [SEED]

For each row, as vLLM's RandomDataset does (benchmark_dataset.py, v0.6-0.9): consecutive
token ids from a random offset, decoded to text, re-encoded, cut to the target length and
decoded again. Prints rows/s and how many prompts re-tokenize to exactly the target length
(the known pitfall), as JSON on one line.
"""
import gzip
import json
import random
import sys
import time

from tokenizers import Tokenizer

path, count, isl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
raw = gzip.decompress(open(path, "rb").read()) if path.endswith(".gz") else open(path, "rb").read()
tok = Tokenizer.from_str(raw.decode())
vocab = tok.get_vocab_size()
rng = random.Random(seed)

start = time.perf_counter()
prompts = []
for i in range(count):
    offset = rng.randrange(vocab)
    ids = [(offset + i + j) % vocab for j in range(isl)]
    text = tok.decode(ids)
    again = tok.encode(text, add_special_tokens=False).ids[:isl]
    prompts.append(tok.decode(again))
seconds = time.perf_counter() - start
exact = sum(1 for p in prompts if len(tok.encode(p, add_special_tokens=False).ids) == isl)
print(json.dumps({"rows": count, "seconds": seconds, "rows_per_s": count / seconds, "exact_rows": exact}))
