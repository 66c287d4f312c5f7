"""explaind's compressed treeAh index against ScaNN, same data, same queries.

    .venv/bin/pip install ".[bench]"      # scann (its pybind API; no TensorFlow ops needed)
    .venv/bin/python bench/bench_ann.py [--n 200000] [--d 128] [--nq 2000] [--repeat 5]

N x d float32 from a Gaussian mixture (1000 clusters, fixed seed), nq held-out
queries from the same mixture, k = 10, squared L2; recall@10 against exact
search. Both indexes get the same partition (N / 1000 leaves, as treeAh's
default leafNodeEmbeddingCount 1000 gives) and 4-bit codes of 2 dimensions
each (ScaNN: score_ah(2); explaind: PQ{d/2}x4fs), then an exact re-rank of
the best candidates. The sweep varies the leaves searched and the candidates
re-ranked, for both. explaind is timed through ExampleIndex.search_arrays
(positions and exact distances, as ScaNN returns them; search() adds the
Python Neighbor objects, timed too), ScaNN through search_batched; each call
answers all nq queries. Both run on one thread (--threads), and the primary
figure is queries per CPU-second (time.process_time): on a machine that other
processes load, wall time measures the load as much as the search, CPU time
does not. Wall-clock queries/s are printed too. Every setting of both
libraries is timed round robin (one call of each in turn, best of --repeat).

Prints queries/s and recall@10 per setting, then the best queries/s of each
at recall@10 >= --target (0.95) and their ratio. Goal: explaind >= 1.3x ScaNN.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types

import faiss
import numpy as np

from explaind.server.index import ExampleIndex, SearchConfig

K = 10
SETTINGS = [(probe, rerank) for probe in (1, 2, 3, 4, 8) for rerank in (40, 50, 60, 70, 80, 100)]


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
    x, q = mixture(args.n, args.nq, args.d)
    exact = faiss.IndexFlatL2(args.d)
    exact.add(x)
    truth = exact.search(q, K)[1]
    leaves = max(1, args.n // 1000)

    t = time.perf_counter()
    config = SearchConfig(dimensions=args.d, distance="SQUARED_L2_DISTANCE", algorithm="tree_ah",
                          leaf_node_embedding_count=1000, neighbor_count=K)
    index = ExampleIndex.build(x, [str(i) for i in range(args.n)], None, None, config, use_gpu=False)
    ours_build = time.perf_counter() - t
    t = time.perf_counter()
    searcher = (scann_ops_pybind.builder(x, K, "squared_l2")
                .tree(num_leaves=leaves, num_leaves_to_search=8, training_sample_size=args.n)
                .score_ah(2, anisotropic_quantization_threshold=0.2)
                .reorder(100).build())
    scann_build = time.perf_counter() - t
    print(f"N={args.n} d={args.d} queries={args.nq} k={K}; explaind {index.info.index_type} built in "
          f"{ours_build:.1f}s, ScaNN tree({leaves}) + AH(2) built in {scann_build:.1f}s; "
          f"this machine: {faiss.omp_get_max_threads()} threads")

    def tuned(probe, rerank, method):
        def call():
            index.tune(nprobe=probe, approximate_neighbors_count=rerank)
            return method(q, K)
        return call

    def theirs(probe, rerank):
        if args.threads > 1:
            return lambda: searcher.search_batched_parallel(q, leaves_to_search=probe,
                                                            pre_reorder_num_neighbors=rerank)
        return lambda: searcher.search_batched(q, leaves_to_search=probe, pre_reorder_num_neighbors=rerank)

    rows = []
    print("queries/s per CPU-second (wall-clock queries/s in brackets); Neighbor objects: search() instead of "
          "search_arrays()")
    print(f"{'leaves':>6} {'rerank':>6} | {'explaind':>16} {'+Neighbors':>16} {'recall':>7} | {'ScaNN':>16} "
          f"{'recall':>7}")
    for probe, rerank in SETTINGS:
        arrays, objects, other = (tuned(probe, rerank, index.search_arrays), tuned(probe, rerank, index.search),
                                  theirs(probe, rerank))
        our_recall = recall(arrays()[0], truth)
        their_recall = recall(other()[0], truth)
        cpu, wall = best_of([arrays, objects, other], args.repeat)
        rate = [args.nq / c for c in cpu]
        rows.append((probe, rerank, rate[0], our_recall, rate[2], their_recall, rate[1]))
        cells = [f"{args.nq / c:7.0f} ({args.nq / w:6.0f})" for c, w in zip(cpu, wall)]
        print(f"{probe:6d} {rerank:6d} | {cells[0]:>16} {cells[1]:>16} {our_recall:7.3f} | {cells[2]:>16} "
              f"{their_recall:7.3f}", flush=True)
    for label, column in (("explaind search_arrays", 2), ("explaind search (Neighbor objects)", 6)):
        ours_best = max((r[column] for r in rows if r[3] >= args.target), default=0.0)
        theirs_best = max((r[4] for r in rows if r[5] >= args.target), default=0.0)
        print(f"best at recall@10 >= {args.target}, per CPU-second: {label} {ours_best:.0f} q/s, ScaNN "
              f"{theirs_best:.0f} q/s, ratio {ours_best / theirs_best if theirs_best else float('nan'):.2f}")


if __name__ == "__main__":
    main()
