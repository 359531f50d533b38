"""Checks analyze's exposition parser against Python's prometheus_client parser.

Usage: python tests/server_metrics_check.py RUN

For every good scrape in RUN's `scrapes` table, parses the body with
`prometheus_client.parser.text_string_to_metric_families` (the reference implementation's
own parser) and requires `analysis/server_metrics.parquet` to hold exactly the same samples
for that scrape: name, labels, value (NaN equal to NaN), timestamp and family type.

One difference is prometheus_client's, not the exposition's: it renames a counter sample
written without `_total` (llama.cpp's `llamacpp:n_tokens_max`) to `..._total`; analyze keeps
names as exposed, so such a name is compared as the exposition wrote it.
"""

import math
import re
import sys
from collections import defaultdict

import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families


def key(name, labels, value, ts, kind):
    v = "nan" if math.isnan(value) else repr(float(value))
    return (name, tuple(sorted(labels.items())), v, ts, kind)


def main():
    run = sys.argv[1]
    scrapes = pq.read_table(f"{run}/scrapes").to_pylist()
    got = defaultdict(list)
    for r in pq.read_table(f"{run}/analysis/server_metrics.parquet").to_pylist():
        import json
        got[(r["target"], r["t_ns"])].append(
            key(r["name"], json.loads(r["labels_json"]), r["value"], r["timestamp_ms"], r["type"]))
    checked = samples = 0
    for s in scrapes:
        if s["error"] is not None:
            assert not got.get((s["target"], s["t_ns"])), f"a failed scrape has samples: {s}"
            continue
        want = []
        for fam in text_string_to_metric_families(s["body"]):
            kind = "untyped" if fam.type in ("unknown", "untyped") else fam.type
            for smp in fam.samples:
                ts = None if smp.timestamp is None else round(float(smp.timestamp) * 1000)
                name = smp.name
                written = re.search(rf"^{re.escape(name)}[{{ \t]", s["body"], re.M)
                if kind == "counter" and name.endswith("_total") and not written:
                    name = name[: -len("_total")]
                want.append(key(name, dict(smp.labels), smp.value, ts, kind))
        have = got.get((s["target"], s["t_ns"]), [])
        assert sorted(want) == sorted(have), (
            f"scrape at {s['t_ns']} ns of {s['target']}:\n"
            f"  only prometheus_client: {sorted(set(want) - set(have))[:5]}\n"
            f"  only analyze: {sorted(set(have) - set(want))[:5]}")
        checked += 1
        samples += len(want)
    assert checked > 0, "no good scrape to check"
    print(f"server_metrics: {samples} samples of {checked} scrapes equal prometheus_client's parse")


if __name__ == "__main__":
    main()
