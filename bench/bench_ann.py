"""explaind's compressed treeAh index against ScaNN, same data, same queries,
on data sets of several shapes (bench/ann_data.py).

    .venv/bin/pip install ".[bench]"      # scann (its pybind API; no TensorFlow ops needed)
    .venv/bin/python bench/bench_ann.py [--shapes mixture,lowdim,relu,model] [--n 200000] [--d 128]
                                        [--nq 2000] [--repeat 5] [--target 0.95]

For each shape: N x d float32 examples and nq held-out queries drawn the same
way, k = 10, squared L2, recall@10 against exact search (FAISS's exhaustive
float32 k-NN, independent of both indexes' code paths). Both indexes get the
same partition (N / 1000 leaves, as treeAh's leafNodeEmbeddingCount 1000
gives) and 4-bit codes, then an exact re-rank of the best candidates in
float32. explaind is uploaded as a user would leave it: a treeAhConfig with
neither leafNodesToSearchPercent nor approximateNeighborsCount, so its build
picks the codes' shape on this data (index/tuning.py; printed); ScaNN runs
with 2 dimensions a code (score_ah(2), its default) and with one
(score_ah(1)), and the comparison takes ScaNN's better figure.

Both are swept over the same leaves searched; at each, the fewest candidates
re-ranked reaching recall@10 >= --target are found (by recall alone, then
timed). explaind is timed through ExampleIndex.search_arrays (positions and
exact distances, as ScaNN returns them) with per-call SearchParams, ScaNN
through search_batched; each call answers all nq queries. Everything runs on
one thread (--threads: FAISS's OpenMP and every BLAS pool, ScaNN's batched
search or search_batched_parallel), and the figure is queries per CPU-second
(time.process_time): on a machine that other processes load, wall time
measures the load as much as the search, CPU time does not. The settings of
a shape are timed round robin (one call of each in turn, best of --repeat).
The load average before and after is printed.

Prints, per shape, the best queries per CPU-second of each index at recall@10
>= --target with its setting, then a table of the ratios. Goal: explaind >=
1.3x ScaNN's best on every shape. Also printed: what explaind's build picked
for the model's own neighborCount (its defaults) and the recall it measured.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ann_data  # noqa: E402 - the bench's data sets, beside this file

from explaind.server.index import ExampleIndex, search_config_from_json  # noqa: E402
from explaind.server.index.backend import limit_cpu_threads  # noqa: E402
from explaind.server.index.search_params import SearchParams  # noqa: E402

K = 10
LEAVES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
RERANKS = (10, 12, 14, 16, 18, 20, 22, 25, 30, 35, 40, 50, 60, 70, 80, 100, 120, 150, 200, 250, 300, 400, 500)
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


def exact_neighbors(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    return faiss.knn(q, x, K)[1]


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


def fewest_reranks(search, truth: np.ndarray, leaves: int, target: float):
    """(rerank, recall) of the fewest candidates reaching target at these leaves, or None."""
    for rerank in RERANKS:
        got = recall(search(leaves, rerank), truth)
        if got >= target:
            return rerank, got
    return None


def sweep(name: str, search, truth: np.ndarray, nlist: int, target: float) -> list[tuple]:
    """(name, leaves, rerank, recall) of each leaves' cheapest setting reaching the target."""
    found = []
    for leaves in LEAVES:
        if leaves > nlist:
            break
        hit = fewest_reranks(search, truth, leaves, target)
        if hit is not None:
            if found and hit[0] >= found[-1][2]:
                break       # more leaves no longer re-rank fewer: they only cost more
            found.append((name, leaves, hit[0], hit[1]))
    return found


def run_shape(shape: str, args, scann_ops_pybind) -> dict:
    x, q = ann_data.make(shape, args.n, args.nq, args.d)
    truth = exact_neighbors(x, q)
    nlist = max(1, args.n // 1000)
    t = time.process_time()
    config = search_config_from_json({"dimensions": args.d, "distanceMeasureType": "SQUARED_L2_DISTANCE",
                                      "algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": 1000}}},
                                     K, "config")
    index = ExampleIndex.build(x, [str(i) for i in range(args.n)], None, None, config, use_gpu=False)
    ours_build = time.process_time() - t
    info = index.info
    searchers, builds = {}, []
    for dims in SCANN_DIMS_PER_CODE:
        t = time.process_time()
        searchers[dims] = (scann_ops_pybind.builder(x, K, "squared_l2")
                           .tree(num_leaves=nlist, num_leaves_to_search=8, training_sample_size=args.n)
                           .score_ah(dims, anisotropic_quantization_threshold=0.2)
                           .reorder(100).build())
        builds.append(f"AH({dims}) {time.process_time() - t:.0f}s")
    print(f"\n== {shape}: N={args.n} d={args.d} queries={args.nq}; explaind {info.index_type} "
          f"built in {ours_build:.0f} CPU-s; ScaNN tree({nlist}) + {', '.join(builds)}")
    print(f"   explaind's build picked: {info.tuning.code_shape}, {info.tuning.leaves} leaves, "
          f"{info.tuning.candidates} candidates; measured recall@{info.recall.neighbor_count} "
          f"{info.recall.recall:.3f} on {info.recall.queries} held-out examples")

    def ours(leaves, rerank):
        return index.search_arrays(q, K, params=SearchParams(leaves_to_search=leaves,
                                                             approximate_neighbors_count=rerank))[0]

    def theirs(dims):
        def search(leaves, rerank):
            s = searchers[dims]
            if args.threads > 1:
                return s.search_batched_parallel(q, leaves_to_search=leaves, pre_reorder_num_neighbors=rerank)[0]
            return s.search_batched(q, leaves_to_search=leaves, pre_reorder_num_neighbors=rerank)[0]
        return search

    methods = {"explaind": ours, **{f"ScaNN AH({d})": theirs(d) for d in SCANN_DIMS_PER_CODE}}
    settings = [s for name, method in methods.items() for s in sweep(name, method, truth, nlist, args.target)]
    defaults = recall(index.search_arrays(q, K)[0], truth)
    calls = [(lambda m=methods[name], leaves=leaves, rerank=rerank: m(leaves, rerank))
             for name, leaves, rerank, _ in settings] + [lambda: index.search_arrays(q, K)]
    cpu, wall = best_of(calls, args.repeat)
    best: dict[str, tuple] = {}
    for (name, leaves, rerank, r), c, w in zip(settings, cpu, wall):
        rate = args.nq / c
        print(f"   {name:>14}: {leaves:3d} leaves {rerank:4d} re-ranked  recall {r:.3f}  "
              f"{rate:7.0f} q/CPU-s ({args.nq / w:6.0f} q/s wall)")
        if rate > best.get(name, (0,))[0]:
            best[name] = (rate, leaves, rerank, r)
    print(f"   explaind's own defaults: recall {defaults:.3f}, {args.nq / cpu[-1]:.0f} q/CPU-s")
    scann = max((v for k, v in best.items() if k.startswith("ScaNN")), default=None, key=lambda v: v[0])
    scann_name = next((k for k, v in best.items() if v is scann), "")
    return {"shape": shape, "codes": info.tuning.code_shape, "ours": best.get("explaind"), "scann": scann,
            "scann_name": scann_name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join(ann_data.SHAPES))
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--nq", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    scann_ops_pybind = import_scann_pybind()
    limit_cpu_threads(args.threads)     # FAISS's OpenMP in each searching thread and numpy's BLAS
    load_before = os.getloadavg()[0]
    rows = [run_shape(shape, args, scann_ops_pybind) for shape in args.shapes.split(",")]
    print(f"\nbest queries per CPU-second at recall@{K} >= {args.target}, {args.threads} thread(s), "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'shape':>8} | {'explaind codes':>16} | {'explaind q/CPU-s':>34} | {'ScaNN best q/CPU-s':>46} | ratio")
    for row in rows:
        ours, scann = row["ours"], row["scann"]
        ratio = ours[0] / scann[0] if ours and scann else float("nan")
        print(f"{row['shape']:>8} | {row['codes']:>16} | {_cell(ours):>34} | "
              f"{row['scann_name'] + ' ' + _cell(scann):>46} | {ratio:.2f}")


def _cell(best) -> str:
    return f"{best[0]:7.0f} ({best[1]} leaves, {best[2]} re-ranked)" if best else "target not reached"


if __name__ == "__main__":
    main()
