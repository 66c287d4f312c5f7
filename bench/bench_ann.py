"""explaind's compressed treeAh index against ScaNN, same data, same queries.

    .venv/bin/pip install ".[bench]"      # scann (its pybind API; no TensorFlow ops needed)
    .venv/bin/python bench/bench_ann.py [--n 200000] [--d 128] [--nq 2000] [--repeat 5]

N x d float32 from a Gaussian mixture (1000 clusters, fixed seed), nq held-out
queries from the same mixture, k = 10, squared L2; recall@10 against exact
search (numpy brute force, tests/oracles.py). Both indexes get the same
partition (N / 1000 leaves, as treeAh's default leafNodeEmbeddingCount 1000
gives) and 4-bit codes, then an exact re-rank of the best candidates in
float32. explaind's codes have one dimension each (PQ{d}x4fs, its default);
ScaNN runs twice, with its default 2 dimensions a code (score_ah(2)) and with
one (score_ah(1), explaind's shape), and the comparison takes ScaNN's better
figure. The sweep varies the leaves searched and the candidates re-ranked, the
same values for every index. explaind is timed through
ExampleIndex.search_arrays (positions and exact distances, as ScaNN returns
them; search() adds the Python Neighbor objects, timed too), ScaNN through
search_batched; each call answers all nq queries. Everything runs on one
thread (--threads: FAISS's OpenMP and every BLAS pool, ScaNN's batched search
or search_batched_parallel), and the primary figure is queries per
CPU-second (time.process_time): on a machine that other processes load, wall
time measures the load as much as the search, CPU time does not. Wall-clock
queries/s are printed too. Every setting of every index is timed round robin
(one call of each in turn, best of --repeat); the load average before and
after is printed.

Prints queries/s and recall@10 per setting, then the best queries/s of each
at recall@10 >= --target (0.95) and their ratio. Goal: explaind >= 1.3x ScaNN.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import types

import faiss
import numpy as np
import threadpoolctl

from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.index.search_params import SearchParams

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import oracles  # noqa: E402 - the repository's numpy oracle, from the repository root

K = 10
# One grid for every index: fine where 1-dimension codes reach the target (16-30
# candidates), coarser where 2-dimension codes do (60-100).
SETTINGS = [(probe, rerank) for probe in (1, 2, 4, 8)
            for rerank in (16, 18, 20, 22, 25, 30, 35, 40, 50, 60, 70, 80, 90, 100)]
SCANN_DIMS_PER_CODE = (2, 1)


def import_scann_pybind():
    """scann's package __init__ loads its TensorFlow ops, which need the TensorFlow
    it was built against; its pybind API does not. Import that alone."""
    spec = importlib.util.find_spec("scann")
    if spec is None:
        sys.exit("scann is not installed: pip install '.[bench]'")
    package = types.ModuleType("scann")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["scann"] = package
    from scann.scann_ops.py import scann_ops_pybind
    return scann_ops_pybind


def mixture(n: int, nq: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, d)).astype(np.float32) * 2
    labels = rng.integers(0, 1000, n + nq)
    points = centers[labels] + rng.standard_normal((n + nq, d)).astype(np.float32)
    return points[:n], points[n:]


def exact_neighbors(x: np.ndarray, q: np.ndarray, block: int = 100) -> np.ndarray:
    """The oracle's k nearest (float64 numpy brute force), a block of queries at a time."""
    return np.concatenate([oracles.nearest(x, q[s:s + block], K, "SQUARED_L2_DISTANCE")[0]
                           for s in range(0, len(q), block)])


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def best_of(calls, repeat: int) -> tuple[list[float], list[float]]:
    """(CPU seconds, wall seconds) per call, each the best of `repeat`, the calls
    interleaved round by round."""
    for call in calls:
        call()
    cpu = [float("inf")] * len(calls)
    wall = [float("inf")] * len(calls)
    for _ in range(repeat):
        for i, call in enumerate(calls):
            c, t = time.process_time(), time.perf_counter()
            call()
            cpu[i] = min(cpu[i], time.process_time() - c)
            wall[i] = min(wall[i], time.perf_counter() - t)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--nq", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scann_ops_pybind = import_scann_pybind()
    faiss.omp_set_num_threads(args.threads)
    threadpoolctl.threadpool_limits(args.threads)     # numpy's BLAS too: CPU time counts every thread
    load_before = os.getloadavg()
    x, q = mixture(args.n, args.nq, args.d)
    truth = exact_neighbors(x, q)
    leaves = max(1, args.n // 1000)

    t = time.perf_counter()
    config = SearchConfig(dimensions=args.d, distance="SQUARED_L2_DISTANCE", algorithm="tree_ah",
                          leaf_node_embedding_count=1000, neighbor_count=K)
    index = ExampleIndex.build(x, [str(i) for i in range(args.n)], None, None, config, use_gpu=False)
    ours_build = time.perf_counter() - t
    searchers, scann_builds = {}, []
    for dims in SCANN_DIMS_PER_CODE:
        t = time.perf_counter()
        searchers[dims] = (scann_ops_pybind.builder(x, K, "squared_l2")
                           .tree(num_leaves=leaves, num_leaves_to_search=8, training_sample_size=args.n)
                           .score_ah(dims, anisotropic_quantization_threshold=0.2)
                           .reorder(100).build())
        scann_builds.append(f"AH({dims}) {time.perf_counter() - t:.1f}s")
    print(f"N={args.n} d={args.d} queries={args.nq} k={K}; explaind {index.info.index_type} built in "
          f"{ours_build:.1f}s, ScaNN tree({leaves}) + {', '.join(scann_builds)}; "
          f"{args.threads} thread(s); load average before: {load_before[0]:.2f}")

    def tuned(probe, rerank, method):
        params = SearchParams(leaves_to_search=probe, approximate_neighbors_count=rerank)
        return lambda: method(q, K, params=params)

    def theirs(searcher, probe, rerank):
        if args.threads > 1:
            return lambda: searcher.search_batched_parallel(q, leaves_to_search=probe,
                                                            pre_reorder_num_neighbors=rerank)
        return lambda: searcher.search_batched(q, leaves_to_search=probe, pre_reorder_num_neighbors=rerank)

    # columns: explaind search_arrays, explaind search, then ScaNN per code shape
    labels = ["explaind", "+Neighbors"] + [f"ScaNN AH({dims})" for dims in SCANN_DIMS_PER_CODE]
    best = {label: (0.0, None) for label in labels}         # (q/s, setting) at recall >= target
    print("queries/s per CPU-second (wall-clock queries/s in brackets); +Neighbors: search() instead of "
          "search_arrays(), same recall")
    print(f"{'leaves':>6} {'rerank':>6} | {labels[0]:>16} {labels[1]:>16} {'recall':>7} | "
          + " | ".join(f"{label:>16} {'recall':>7}" for label in labels[2:]))
    for probe, rerank in SETTINGS:
        calls = [tuned(probe, rerank, index.search_arrays), tuned(probe, rerank, index.search)]
        calls += [theirs(searchers[dims], probe, rerank) for dims in SCANN_DIMS_PER_CODE]
        recalls = [recall(calls[0]()[0], truth)] * 2 + [recall(call()[0], truth) for call in calls[2:]]
        cpu, wall = best_of(calls, args.repeat)
        cells = [f"{args.nq / c:7.0f} ({args.nq / w:6.0f})" for c, w in zip(cpu, wall)]
        for label, c, r in zip(labels, cpu, recalls):
            if r >= args.target and args.nq / c > best[label][0]:
                best[label] = (args.nq / c, (probe, rerank, r))
        print(f"{probe:6d} {rerank:6d} | {cells[0]:>16} {cells[1]:>16} {recalls[0]:7.3f} | "
              + " | ".join(f"{cell:>16} {r:7.3f}" for cell, r in zip(cells[2:], recalls[2:])), flush=True)
    print(f"best at recall@10 >= {args.target}, per CPU-second (leaves, rerank, recall):")
    for label in labels:
        rate, setting = best[label]
        where = f"at {setting[0]}, {setting[1]}, {setting[2]:.3f}" if setting else "(target not reached)"
        print(f"  {label:>16}: {rate:7.0f} q/s {where}")
    scann_best = max(best[label][0] for label in labels[2:])
    for label in labels[:2]:
        ratio = best[label][0] / scann_best if scann_best else float("nan")
        print(f"ratio {label} / best ScaNN: {ratio:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
