"""Where each filtering strategy wins: the data behind FilterPolicy's bands.

    python bench/bench_filter_thresholds.py [--n 1000000] [--gpu] [--nq 64]

For filters admitting a sweep of fractions of N, times every strategy of
index/filtering.py forced in turn (subset scan, selector, post-filter) on an
exact and an IVF index, as a ratio to the unfiltered search of the same run,
and prints the fastest strategy per fraction and the band edges it suggests
(subset_max_rows on this device, postfilter_min_fraction). Every strategy
returns the same (exact) neighbors; only the time differs.
"""
from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

from explaind.server.index import ExampleIndex, Namespace, SearchConfig
from explaind.server.index.backend import gpu_available
from explaind.server.index.search_params import STRATEGIES, FilterPolicy, SearchParams

FRACTIONS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5]


def best_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None, help="examples (default 1000000 on GPU, 200000 on CPU)")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--nq", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()
    gpu = args.gpu and gpu_available()
    n = args.n or (1_000_000 if gpu else 200_000)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((256, args.d)).astype(np.float32) * 4
    x = centers[rng.integers(0, 256, n)] + rng.standard_normal((n, args.d)).astype(np.float32)
    u = rng.random(n)
    # Token f<i> is held by the examples whose u < FRACTIONS[i]: nested filters of exact sizes.
    restricts = [[Namespace("sel", tuple(f"f{i}" for i, f in enumerate(FRACTIONS) if ui < f))] for ui in u]
    queries = x[rng.integers(0, n, args.nq)] + rng.standard_normal((args.nq, args.d)).astype(np.float32)
    print(f"N={n} d={args.d} k={args.k} batch={args.nq} device={'gpu' if gpu else 'cpu'}")
    for name, algorithm in (("exact", "brute_force"), ("IVF", "tree_ah")):
        config = SearchConfig(dimensions=args.d, distance="SQUARED_L2_DISTANCE", feature_norm="NONE",
                              algorithm=algorithm)
        index = ExampleIndex.build(x, [str(i) for i in range(n)], restricts, None, config, use_gpu=gpu)
        base = best_ms(partial(index.search, queries, args.k), args.repeat)
        print(f"\n{name} ({index.info.index_type}, {index.info.device}): unfiltered {base:.2f} ms/batch")
        print(f"{'admits':>8}{'rows':>10}" + "".join(f"{s:>12}" for s in STRATEGIES) + "   fastest")
        winners = []
        for i, fraction in enumerate(FRACTIONS):
            query = [[Namespace("sel", (f"f{i}",))]] * args.nq
            row = {}
            for strategy in STRATEGIES:
                forced = SearchParams(filter_policy=FilterPolicy(force=strategy))
                row[strategy] = best_ms(partial(index.search, queries, args.k, restricts=query, params=forced),
                                        args.repeat)
            fastest = min(row, key=row.get)
            winners.append((fraction, fastest))
            rows = int((u < fraction).sum())
            print(f"{fraction:>8.2%}{rows:>10}" + "".join(f"{row[s] / base:>12.2f}" for s in STRATEGIES)
                  + f"   {fastest}")
        subset_edge = max((f for f, s in winners if s == "subset"), default=0.0)
        post_edge = min((f for f, s in winners if s == "postfilter"), default=1.0)
        print(f"suggests: subset scan up to about {int(subset_edge * n)} rows ({subset_edge:.2%}); "
              f"post-filter from {post_edge:.0%} of N; the selector between")


if __name__ == "__main__":
    main()
