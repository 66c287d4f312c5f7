"""Load generator: concurrent gRPC clients over loopback against the daemon.

Fixed request count, EMBEDDINGS format, k=10, for each measure and index kind
asked. Per daemon run it prints served QPS, p50/p99/p99.9 latency, the
daemon's CPU per call (user + system of its whole process tree, read from
/proc before and after the timed run, so other work on the machine does not
count) and the batches it formed (count, mean size and the share of batches
of at most 8, 32 and 64 instances, from its own explaind_batch_size
histogram). Raw FAISS batched search in one process is the ceiling, with its
CPU per query (this process's CPU time over the timed loop): with FAISS's
defaults, and with BLAS from 8 queries as the daemon sets it (FAISS 1.15's
default keeps every batch on its pairwise kernel, several times the CPU). Both
run with OMP_WAIT_POLICY=PASSIVE, as the daemon does.

    python bench/load_generator.py [--n 100000] [--d 128] [--clients 64] [--requests 20000]
                                   [--distance DOT_PRODUCT_DISTANCE,SQUARED_L2_DISTANCE]
                                   [--algorithm flat,ivf] [--gpu] [--workers N] [--tls]
                                   [--client-processes P] [--no-unbatched] [--daemon-flag=--x=y ...]

--gpu: the daemon's index and the raw one on the GPU (when visible).
--workers: daemon processes sharing the port. --tls: the daemon serves TLS
(a certificate made for the run) and the clients trust it.
--client-processes: the clients are spread over P processes (one Python
process cannot send more than a few thousand calls a second).
--daemon-flag: passed to `explaind serve` as is (repeat it), e.g.
--daemon-flag=--search-threads=1.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")     # as `explaind serve`; before FAISS loads OpenMP
import faiss  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import ALGORITHMS, MEASURES, Daemon, batch_sizes, explain_requests, gpu_visible, percentiles, \
    raw_index  # noqa: E402

from explaind.server.index.backend import BLAS_FROM_QUERIES  # noqa: E402
from explaind.v1 import prediction_service_pb2_grpc  # noqa: E402

MODEL = "load"


async def run_load(target: str, requests, clients: int, total: int, channels: int = 4, credentials=None):
    """`clients` concurrent callers share `channels` HTTP/2 connections; each sends
    its next request when the previous answer arrives (closed loop)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(total))
    options = [("grpc.use_local_subchannel_pool", 1)]
    chans = [grpc.aio.secure_channel(target, credentials, options=options) if credentials is not None
             else grpc.aio.insecure_channel(target, options=options) for _ in range(channels)]
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


def _client_process(target: str, queries: np.ndarray, clients: int, total: int, start_at: float,
                    ca_file: str | None):
    """One client process: waits for the common start, then runs its share."""
    requests = explain_requests(queries, MODEL)
    credentials = None
    if ca_file:
        with open(ca_file, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    time.sleep(max(0.0, start_at - time.time()))
    qps, latencies, errors = asyncio.run(run_load(target, requests, clients, total, credentials=credentials))
    return latencies, errors


def load(daemon: Daemon, queries: np.ndarray, clients: int, total: int, processes: int):
    """(QPS over all processes, latencies, errors)."""
    if processes <= 1:
        return asyncio.run(run_load(daemon.target, explain_requests(queries, MODEL), clients, total,
                                    credentials=daemon.credentials()))
    start_at = time.time() + 3.0       # every process connected and ready
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        shares = [(daemon.target, queries, max(1, clients // processes), total // processes, start_at,
                   daemon.ca_file) for _ in range(processes)]
        results = pool.starmap(_client_process, shares)
    elapsed = time.time() - start_at
    latencies = [x for lat, _ in results for x in lat]
    errors: dict[str, int] = {}
    for _, errs in results:
        for code, n in errs.items():
            errors[code] = errors.get(code, 0) + n
    return len(latencies) / elapsed, latencies, errors


def measure(label: str, data, queries, args, distance: str, algorithm: str, *flags,
            store: str | None = None) -> dict:
    """One daemon with `flags`; the model is uploaded unless `store` already holds it."""
    daemon = Daemon("--use-gpu", "yes" if args.gpu else "no", "--workers", str(args.workers), *flags,
                    *args.daemon_flag, store=store, tls=args.tls)
    try:
        if store is None:
            daemon.upload_embeddings(data, MODEL, distance=distance, algorithm=ALGORITHMS[algorithm])
        daemon.dimensions = data.shape[1]
        daemon.wait_all_workers_loaded(args.workers, MODEL)
        load(daemon, queries, args.clients, min(2000, args.requests), args.client_processes)   # warm-up
        batches_before = daemon.histogram("explaind_batch_size", MODEL)
        cpu_before = daemon.cpu_seconds()
        qps, latencies, errors = load(daemon, queries, args.clients, args.requests, args.client_processes)
        cpu = daemon.cpu_seconds() - cpu_before
        batches = batch_sizes(batches_before, daemon.histogram("explaind_batch_size", MODEL))
    finally:
        daemon.stop()
    return {"label": label, "qps": qps, **percentiles(latencies), "errors": errors, "store": daemon.store,
            "cpu_ms": 1000 * cpu / max(1, len(latencies)), "batches": batches}


def raw_faiss(index, queries, args, blas_from: int) -> dict:
    """Raw FAISS batched search in this process: queries/s and CPU per query, with
    BLAS from `blas_from` queries a search."""
    default = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = blas_from
    try:
        batch = args.max_batch_size
        index.search(queries[:batch], 10)
        start, cpu_start = time.perf_counter(), time.process_time()
        searched = 0
        while searched < args.requests:
            index.search(queries[searched % len(queries):][:batch], 10)
            searched += batch
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        faiss.cvar.distance_compute_blas_threshold = default
    return {"qps": searched / elapsed, "cpu_ms": 1000 * cpu / searched}


def _batches_text(batches: dict) -> str:
    if not batches["batches"]:
        return "-"
    shares = " ".join(f"<={int(b)}:{share:.0%}" for b, share in batches["le"].items() if b in (8, 32, 64))
    return f"{batches['batches']} batches, mean {batches['mean']:.1f} ({shares})"


def run_one(data, queries, args, distance: str, algorithm: str) -> None:
    index = raw_index(data, algorithm, args.gpu, distance)
    raws = [(f"raw FAISS, batches of {args.max_batch_size}",
             raw_faiss(index, queries, args, faiss.cvar.distance_compute_blas_threshold)),
            (f"  same, BLAS from {BLAS_FROM_QUERIES}", raw_faiss(index, queries, args, BLAS_FROM_QUERIES))]
    del index
    batched = measure("daemon, batching", data, queries, args, distance, algorithm,
                      "--max-batch-size", str(args.max_batch_size),
                      "--max-queue-delay-ms", str(args.max_queue_delay_ms))
    rows = [batched]
    if args.unbatched:
        rows.append(measure("daemon, no batching", data, queries, args, distance, algorithm,
                            "--max-batch-size", "1", "--max-queue-delay-ms", "0",
                            store=batched["store"]))      # same built model
    measure_name = distance.replace("_DISTANCE", "")
    print(f"\n{measure_name}, N={args.n} d={args.d} k=10 {algorithm} index on {'GPU' if args.gpu else 'CPU'}, "
          f"{args.clients} clients in {args.client_processes} process(es), daemon workers={args.workers}"
          f"{', TLS' if args.tls else ''}{' ' + ' '.join(args.daemon_flag) if args.daemon_flag else ''}, "
          f"{args.requests} requests, {os.cpu_count()} cores, raw FAISS threads={faiss.omp_get_max_threads()}")
    print(f"{'':28}{'QPS':>8}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'CPU/call ms':>13}  batches formed; errors")
    for r in rows:
        print(f"{r['label']:28}{r['qps']:8.0f}{r['p50']:9.2f}{r['p99']:9.2f}{r['p99.9']:10.2f}{r['cpu_ms']:13.3f}"
              f"  {_batches_text(r['batches'])}; {r['errors'] or '-'}")
    for label, raw in raws:
        print(f"{label:28}{raw['qps']:8.0f}{'':28}{raw['cpu_ms']:13.3f}  (CPU per query)")
    for label, raw in raws:
        print(f"{measure_name} {algorithm}: daemon with batching / {label.strip()}: "
              f"QPS {rows[0]['qps'] / raw['qps']:.2f}x, "
              f"CPU per call - raw CPU per query: {rows[0]['cpu_ms'] - raw['cpu_ms']:+.3f} ms")
    if args.unbatched:
        print(f"batching / no batching: {rows[0]['qps'] / rows[1]['qps']:.2f}x")
    sys.stdout.flush()


def _names(text: str, choices, what: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in choices]
    if unknown or not names:
        raise SystemExit(f"--{what}: one or more of {', '.join(choices)} (comma separated), got {text!r}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-queue-delay-ms", type=float, default=1.0)
    parser.add_argument("--distance", default=",".join(MEASURES), help="measures, comma separated")
    parser.add_argument("--algorithm", default="flat", help="index kinds, comma separated: " + ", ".join(ALGORITHMS))
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="daemon processes sharing the port")
    parser.add_argument("--tls", action="store_true", help="the daemon serves TLS")
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument("--unbatched", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the daemon without batching (max batch size 1)")
    parser.add_argument("--daemon-flag", action="append", default=[], help="an `explaind serve` flag, as --x=y")
    args = parser.parse_args()
    args.gpu = args.gpu and gpu_visible()
    distances = _names(args.distance, list(MEASURES), "distance")
    algorithms = _names(args.algorithm, list(ALGORITHMS), "algorithm")
    rng = np.random.default_rng(0)
    data = rng.normal(size=(args.n, args.d)).astype(np.float32)
    queries = rng.normal(size=(4096, args.d)).astype(np.float32)
    for distance in distances:
        for algorithm in algorithms:
            run_one(data, queries, args, distance, algorithm)


if __name__ == "__main__":
    main()
