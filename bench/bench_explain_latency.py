"""Explain latency through the daemon vs the same search on a raw FAISS index.

100k x 128 float32 embeddings, exact (flat) index, k=10, batch 1, EMBEDDINGS
format. Prints p50/p99 for both and the ratio (what serving costs on top of
the search: gRPC, parsing, batching, response building).

    python bench/bench_explain_latency.py [--n 100000] [--calls 2000] [--index-threads 1]
                                          [--algorithm flat|ivf] [--gpu]

--gpu puts both the raw index and the daemon's (--use-gpu yes) on the GPU.
Raw FAISS runs under OMP_WAIT_POLICY=PASSIVE, as the daemon does.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")     # as `explaind serve`; before FAISS loads OpenMP
import faiss  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import ALGORITHMS, Daemon, explain_requests, gpu_visible, percentiles, raw_index  # noqa: E402

from explaind.v1 import prediction_service_pb2_grpc  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--index-threads", type=int, default=0,
                        help="the daemon's --index-threads (0: its plan, the cores but one)")
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="flat")
    parser.add_argument("--gpu", action="store_true", help="raw index and daemon on the GPU (when visible)")
    args = parser.parse_args()
    gpu = args.gpu and gpu_visible()
    rng = np.random.default_rng(0)
    data = rng.normal(size=(args.n, args.d)).astype(np.float32)
    queries = rng.normal(size=(args.calls, args.d)).astype(np.float32)

    index = raw_index(data, args.algorithm, gpu)
    raw = []
    for i in range(args.warmup + args.calls):
        start = time.perf_counter()
        index.search(queries[i % args.calls][None], 10)
        if i >= args.warmup:
            raw.append(time.perf_counter() - start)

    daemon = Daemon("--max-queue-delay-ms", "0", "--index-threads", str(args.index_threads),
                    "--use-gpu", "yes" if gpu else "no")
    try:
        daemon.upload_embeddings(data, "bench", algorithm=ALGORITHMS[args.algorithm])
        channel = grpc.insecure_channel(daemon.target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        requests = explain_requests(queries, "bench")
        served = []
        for i in range(args.warmup + args.calls):
            start = time.perf_counter()
            response = stub.Explain(requests[i % args.calls], timeout=30)
            if i >= args.warmup:
                served.append(time.perf_counter() - start)
        assert len(response.explanations[0].neighbors) == 10
        if args.algorithm == "flat":   # same answers as raw FAISS (ids are positions in this data set)
            last = (args.warmup + args.calls - 1) % args.calls
            _, expected = index.search(queries[last:last + 1], 10)
            assert [n.neighbor_id for n in response.explanations[0].neighbors] == [str(i) for i in expected[0]]
    finally:
        daemon.stop()
    r, s = percentiles(raw), percentiles(served)
    print(f"N={args.n} d={args.d} k=10 {args.algorithm} index on {'GPU' if gpu else 'CPU'}, batch 1, "
          f"{args.calls} calls, CPU threads={faiss.omp_get_max_threads()}, daemon --index-threads {args.index_threads}")
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'raw FAISS (in process)':24}{r['p50']:10.3f}{r['p99']:10.3f}")
    print(f"{'Explain through daemon':24}{s['p50']:10.3f}{s['p99']:10.3f}")
    print(f"{'ratio daemon / raw':24}{s['p50'] / r['p50']:10.2f}{s['p99'] / r['p99']:10.2f}")
    print(f"{'overhead (ms)':24}{s['p50'] - r['p50']:10.3f}{s['p99'] - r['p99']:10.3f}")


if __name__ == "__main__":
    main()
