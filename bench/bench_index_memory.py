"""Host memory of a loaded exact index against raw FAISS holding the same vectors.

    .venv/bin/python bench/bench_index_memory.py [--n 500000] [--d 128]

For each distance measure, in a fresh process: RSS growth of building an
ExampleIndex (after the caller drops its own copy of the data) vs an
IndexFlat with the same vectors, and the index_bytes the server reports.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import gc, json, sys
import numpy as np
import faiss
from explaind.server.index import ExampleIndex, SearchConfig

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

n, d, distance, which = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
x = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
ids = [str(i) for i in range(n)]
gc.collect()
base = rss_mb()
if which == "faiss":
    index = faiss.IndexFlat(d, faiss.METRIC_INNER_PRODUCT)
    index.add(x)
    reported = 0
else:
    index = ExampleIndex.build(x, ids, None, None, SearchConfig(dimensions=d, distance=distance,
                                                                 feature_norm="NONE", algorithm="brute_force"))
    reported = index.info.index_bytes / 2**20
del x
gc.collect()
print(json.dumps({"growth_mb": rss_mb() - base + n * d * 4 / 2**20, "reported_mb": reported}))
"""


def measure(n: int, d: int, distance: str, which: str) -> dict:
    out = subprocess.check_output([sys.executable, "-c", CHILD, str(n), str(d), distance, which])
    return json.loads(out.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--d", type=int, default=128)
    args = parser.parse_args()
    raw = measure(args.n, args.d, "DOT_PRODUCT_DISTANCE", "faiss")["growth_mb"]
    print(f"N={args.n} d={args.d} exact index; vectors alone {args.n * args.d * 4 / 2**20:.0f} MB")
    print(f"{'':24}{'RSS MB':>10}{'ratio':>8}{'reported MB':>14}")
    print(f"{'raw FAISS IndexFlat':24}{raw:10.0f}{1.0:8.2f}{'':>14}")
    for distance in ("DOT_PRODUCT_DISTANCE", "SQUARED_L2_DISTANCE", "COSINE_DISTANCE"):
        got = measure(args.n, args.d, distance, "explaind")
        print(f"{distance:24}{got['growth_mb']:10.0f}{got['growth_mb'] / raw:8.2f}{got['reported_mb']:14.0f}")


if __name__ == "__main__":
    main()
