"""explaind's compressed treeAh index against ScaNN, same data, same queries.

    .venv/bin/pip install ".[bench]"      # scann (its pybind API; no TensorFlow ops needed)
    .venv/bin/python bench/bench_ann.py [--n 200000] [--d 128] [--nq 2000] [--repeat 5]

N x d float32 from a Gaussian mixture (1000 clusters, fixed seed), nq held-out
queries from the same mixture, k = 10, squared L2; recall@10 against exact
search. Both indexes get the same partition (N / 1000 leaves, as treeAh's
default leafNodeEmbeddingCount 1000 gives) and 4-bit codes of 2 dimensions
each (ScaNN: score_ah(2); explaind: PQ{d/2}x4fs), then an exact re-rank of
the best candidates. The sweep varies the leaves searched and the candidates
re-ranked, for both. explaind is timed through ExampleIndex.search (ids,
Neighbor objects and all), ScaNN through search_batched_parallel on the raw
arrays; each call answers all nq queries. Every setting of both libraries is
timed round robin (one call of each in turn, best of --repeat), so load from
other processes hits both alike.

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
SETTINGS = [(probe, rerank) for probe in (4, 8, 12, 16, 24) for rerank in (20, 30, 40, 60, 100)]


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


def best_of(calls, repeat: int) -> list[float]:
    """Seconds per call, best of `repeat`, the calls interleaved round by round."""
    for call in calls:
        call()
    best = [float("inf")] * len(calls)
    for _ in range(repeat):
        for i, call in enumerate(calls):
            t = time.perf_counter()
            call()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--nq", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.95)
    args = parser.parse_args()
    scann_ops_pybind = import_scann_pybind()
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

    def ours(probe, rerank):
        def call():
            index.tune(nprobe=probe, approximate_neighbors_count=rerank)
            return index.search(q, K)
        return call

    def theirs(probe, rerank):
        return lambda: searcher.search_batched_parallel(q, leaves_to_search=probe, pre_reorder_num_neighbors=rerank)

    rows = []
    print(f"{'leaves':>6} {'rerank':>6} | {'explaind q/s':>12} {'recall':>7} | {'ScaNN q/s':>10} {'recall':>7}")
    for probe, rerank in SETTINGS:
        mine, other = ours(probe, rerank), theirs(probe, rerank)
        got = mine()
        our_recall = recall(np.array([[n.position for n in row] for row in got]), truth)
        their_recall = recall(other()[0], truth)
        our_s, their_s = best_of([mine, other], args.repeat)
        rows.append((probe, rerank, args.nq / our_s, our_recall, args.nq / their_s, their_recall))
        print(f"{probe:6d} {rerank:6d} | {rows[-1][2]:12.0f} {our_recall:7.3f} | {rows[-1][4]:10.0f} {their_recall:7.3f}",
              flush=True)
    ours_best = max((r[2] for r in rows if r[3] >= args.target), default=0.0)
    theirs_best = max((r[4] for r in rows if r[5] >= args.target), default=0.0)
    print(f"best at recall@10 >= {args.target}: explaind {ours_best:.0f} q/s, ScaNN {theirs_best:.0f} q/s, "
          f"ratio {ours_best / theirs_best if theirs_best else float('nan'):.2f}")


if __name__ == "__main__":
    main()
