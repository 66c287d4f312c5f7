"""Load generator: concurrent gRPC clients over loopback against the daemon.

Fixed request count, EMBEDDINGS format, k=10. Prints served QPS and
p50/p99/p99.9 latency with dynamic batching, without it (max batch size 1),
and raw FAISS batched search in one process as the ceiling.

    python bench/load_generator.py [--n 100000] [--d 128] [--clients 64] [--requests 20000]
                                   [--algorithm flat|ivf] [--gpu] [--workers N] [--client-processes P]

--gpu: the daemon's index and the raw one on the GPU (when visible).
--workers: daemon processes sharing the port. --client-processes: the
clients are spread over P processes (one Python process cannot send more than
a few thousand calls a second).
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time

import faiss
import grpc
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import ALGORITHMS, Daemon, explain_requests, gpu_visible, percentiles, raw_index  # noqa: E402

from explaind.v1 import prediction_service_pb2_grpc  # noqa: E402


async def run_load(target: str, requests, clients: int, total: int, channels: int = 4):
    """`clients` concurrent callers share `channels` HTTP/2 connections; each sends
    its next request when the previous answer arrives (closed loop)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(total))
    chans = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
             for _ in range(channels)]
    stubs = [prediction_service_pb2_grpc.PredictionServiceStub(c) for c in chans]

    async def client(i: int):
        stub = stubs[i % len(stubs)]
        for n in counter:
            start = time.perf_counter()
            try:
                await stub.Explain(requests[n % len(requests)], timeout=30)
                latencies.append(time.perf_counter() - start)
            except grpc.aio.AioRpcError as e:
                errors[e.code().name] = errors.get(e.code().name, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    for c in chans:
        await c.close()
    return len(latencies) / elapsed, latencies, errors


def _client_process(target: str, queries: np.ndarray, clients: int, total: int, start_at: float):
    """One client process: waits for the common start, then runs its share."""
    requests = explain_requests(queries, "load")
    time.sleep(max(0.0, start_at - time.time()))
    qps, latencies, errors = asyncio.run(run_load(target, requests, clients, total))
    return latencies, errors


def load(target: str, queries: np.ndarray, clients: int, total: int, processes: int):
    """(QPS over all processes, latencies, errors)."""
    if processes <= 1:
        return asyncio.run(run_load(target, explain_requests(queries, "load"), clients, total))
    start_at = time.time() + 3.0       # every process connected and ready
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        shares = [(target, queries, max(1, clients // processes), total // processes, start_at)
                  for _ in range(processes)]
        results = pool.starmap(_client_process, shares)
    elapsed = time.time() - start_at
    latencies = [x for lat, _ in results for x in lat]
    errors: dict[str, int] = {}
    for _, errs in results:
        for code, n in errs.items():
            errors[code] = errors.get(code, 0) + n
    return len(latencies) / elapsed, latencies, errors


def measure(label: str, data, queries, args, *flags, store: str | None = None) -> dict:
    """One daemon with `flags`; the model is uploaded unless `store` already holds it."""
    daemon = Daemon("--use-gpu", "yes" if args.gpu else "no", "--workers", str(args.workers), *flags, store=store)
    try:
        if store is None:
            daemon.upload_embeddings(data, "load", algorithm=ALGORITHMS[args.algorithm])
        daemon.dimensions = data.shape[1]
        daemon.wait_all_workers_loaded(args.workers)
        load(daemon.target, queries, args.clients, min(2000, args.requests), args.client_processes)   # warm-up
        qps, latencies, errors = load(daemon.target, queries, args.clients, args.requests, args.client_processes)
    finally:
        daemon.stop()
    return {"label": label, "qps": qps, **percentiles(latencies), "errors": errors, "store": daemon.store}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-queue-delay-ms", type=float, default=1.0)
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="flat")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="daemon processes sharing the port")
    parser.add_argument("--client-processes", type=int, default=1)
    args = parser.parse_args()
    args.gpu = args.gpu and gpu_visible()
    rng = np.random.default_rng(0)
    data = rng.normal(size=(args.n, args.d)).astype(np.float32)
    queries = rng.normal(size=(4096, args.d)).astype(np.float32)

    index = raw_index(data, args.algorithm, args.gpu)
    batch = args.max_batch_size
    index.search(queries[:batch], 10)
    start = time.perf_counter()
    searched = 0
    while searched < args.requests:
        index.search(queries[searched % 4096:][:batch], 10)
        searched += batch
    raw_qps = searched / (time.perf_counter() - start)

    batched = measure("daemon, batching", data, queries, args, "--max-batch-size", str(args.max_batch_size),
                      "--max-queue-delay-ms", str(args.max_queue_delay_ms))
    rows = [batched, measure("daemon, no batching", data, queries, args, "--max-batch-size", "1",
                             "--max-queue-delay-ms", "0", store=batched["store"])]      # same built model
    print(f"N={args.n} d={args.d} k=10 {args.algorithm} index on {'GPU' if args.gpu else 'CPU'}, "
          f"{args.clients} clients in {args.client_processes} process(es), daemon workers={args.workers}, "
          f"{args.requests} requests, CPU threads={faiss.omp_get_max_threads()}")
    print(f"{'':28}{'QPS':>10}{'p50 ms':>10}{'p99 ms':>10}{'p99.9 ms':>10}  errors")
    for r in rows:
        print(f"{r['label']:28}{r['qps']:10.0f}{r['p50']:10.2f}{r['p99']:10.2f}{r['p99.9']:10.2f}  {r['errors'] or '-'}")
    print(f"{f'raw FAISS, batches of {batch}':28}{raw_qps:10.0f}")
    print(f"batching / no batching: {rows[0]['qps'] / rows[1]['qps']:.2f}x; "
          f"daemon with batching / raw FAISS: {rows[0]['qps'] / raw_qps:.2f}")


if __name__ == "__main__":
    main()
