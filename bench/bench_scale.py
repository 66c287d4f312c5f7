"""A large upload of precomputed embeddings through a real daemon: time, peak
memory, and what the served index holds in RAM and maps.

    .venv/bin/python bench/bench_scale.py [--n 10000000] [--d 128] [--leaf 2500] [--algorithm tree_ah]

Writes N x d float32 (a Gaussian mixture, fixed seed) as one .npy into a scratch
folder, starts `explaind serve` on a fresh local store, uploads it as an
index-only model (treeAhConfig with leafNodeEmbeddingCount --leaf, or
bruteForceConfig), waits for the operation, then loads the model with a first
Explain. Prints the build's stage durations, the peak RSS of the build process
(the daemon's default runner builds in a child process; its VmHWM is read at
every poll) against its budget (the codes and ids it keeps, about 80 bytes an
example, plus 2 GiB: a build's memory must not grow with N beyond them) and
the daemon's, the daemon's RSS once serving, the Model's index_bytes and
mapped_bytes, bytes per example, the recall the build measured, and recall@10
of 100 queries against an exact scan of the file. Needs free disk for the
.npy, the build's scratch copy of the embeddings and its segment (linked into
the store): about 3 x N x d x 4 bytes. --keep DIR keeps the store there (for
bench_disk_reads.py --index).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

from explaind.client import Client
from explaind.client.client import operation_result, upload_metadata

BLOCK = 1 << 20


def centers(d: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4096, d)).astype(np.float32) * 2


def write_mixture(path: str, n: int, d: int) -> None:
    """The data set, written block by block (never whole in memory)."""
    rng, c = np.random.default_rng(1), centers(d)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, BLOCK):
        m = min(BLOCK, n - s)
        out[s:s + m] = c[rng.integers(0, 4096, m)] + rng.standard_normal((m, d)).astype(np.float32)
    out.flush()


def mixture_queries(d: int) -> np.ndarray:
    rng, c = np.random.default_rng(2), centers(d)
    return c[rng.integers(0, 4096, 100)] + rng.standard_normal((100, d)).astype(np.float32)


def exact_top10(path: str, queries: np.ndarray) -> np.ndarray:
    x = np.load(path, mmap_mode="r")
    best_d = np.full((len(queries), 10), np.inf, np.float32)
    best_i = np.zeros((len(queries), 10), np.int64)
    q_sq = (queries ** 2).sum(1)[:, None]
    for s in range(0, len(x), BLOCK):
        block = np.asarray(x[s:s + BLOCK])
        dist = q_sq - 2 * queries @ block.T + (block ** 2).sum(1)[None, :]
        cand_d = np.concatenate([best_d, dist], axis=1)
        cand_i = np.concatenate([best_i, np.arange(s, s + len(block))[None, :].repeat(len(queries), 0)], axis=1)
        order = np.argsort(cand_d, axis=1)[:, :10]
        best_d, best_i = np.take_along_axis(cand_d, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def rss_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """The pids under pid (the build's child process, and anything it started)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = []
        try:        # each thread lists the children it started (the build thread starts the build's)
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids += [int(k) for k in f.read().split()]
        except OSError:
            continue
        found += kids
        todo += kids
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--leaf", type=int, default=2500)
    parser.add_argument("--algorithm", choices=["tree_ah", "brute_force"], default="tree_ah")
    parser.add_argument("--scratch", default=tempfile.gettempdir())
    parser.add_argument("--data", default="", help="reuse (or keep) the data set at this path")
    parser.add_argument("--keep", default="", help="keep the store in this folder (created)")
    args = parser.parse_args()
    scratch = args.keep or tempfile.mkdtemp(prefix="explaind-scale-", dir=args.scratch)
    os.makedirs(scratch, exist_ok=True)
    try:
        run(args, scratch)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


def run(args, scratch: str) -> None:
    data = args.data or os.path.join(scratch, "embeddings.npy")
    if not os.path.exists(data):
        t = time.perf_counter()
        write_mixture(data, args.n, args.d)
        print(f"wrote {args.n} x {args.d} ({os.path.getsize(data) / 2**30:.1f} GiB) in "
              f"{time.perf_counter() - t:.0f}s", flush=True)
    queries = mixture_queries(args.d)
    port, metrics_port = free_port(), free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    daemon = subprocess.Popen([sys.executable, "-m", "explaind.server.main", "serve", "--port", str(port),
                               "--metrics-port", str(metrics_port), "--host", "127.0.0.1",
                               "--store", os.path.join(scratch, "store"),
                               "--cache-dir", os.path.join(scratch, "cache"), "--log-level", "WARNING"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in daemon.stdout:
            if "listening" in line:
                break
        algorithm = ({"treeAhConfig": {"leafNodeEmbeddingCount": args.leaf, "leafNodesToSearchPercent": 2}}
                     if args.algorithm == "tree_ah" else {"bruteForceConfig": {}})
        model = {"displayName": "scale", "explanationSpec": {"parameters": {"examples": {
            "gcsSource": {"uris": [data]}, "neighborCount": 10, "nearestNeighborSearchConfig": {"config": {
                "dimensions": args.d, "approximateNeighborsCount": 100, "distanceMeasureType": "SQUARED_L2_DISTANCE",
                "algorithmConfig": algorithm}}}}}}
        rss_before = rss_kb(daemon.pid, "VmRSS")
        with Client(f"127.0.0.1:{port}") as client:
            started = time.perf_counter()
            stages: dict[str, float] = {}
            last = [None, started]

            def progress(meta):
                stage = type(meta).Stage.Name(meta.stage)
                if stage != last[0]:
                    now = time.perf_counter()
                    if last[0] is not None:
                        stages[last[0]] = now - last[1]
                    last[0], last[1] = stage, now
                    print(f"  {now - started:7.0f}s {stage} {meta.examples_embedded}/{meta.examples_total}",
                          flush=True)

            op = client.upload_model(model, model_id="scale")
            slow_polls, build_peak_kb = 0, 0
            while True:
                build_peak_kb = max([build_peak_kb] + [rss_kb(child, "VmHWM") for child in descendants(daemon.pid)])      # polls, not WaitOperation: a busy build process may answer late
                try:
                    current = client.get_operation(op.name, timeout=120)
                except grpc.RpcError as e:
                    if e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                        raise
                    slow_polls += 1
                    continue
                progress(upload_metadata(current))
                if current.done:
                    break
                time.sleep(2.0)
            if current.HasField("error"):
                raise SystemExit(f"the upload failed: {current.error.message}")
            built = operation_result(current).model
            build_s = time.perf_counter() - started
            peak_build_kb = rss_kb(daemon.pid, "VmHWM")
            t = time.perf_counter()
            found = client.explain("scale", [q.tolist() for q in queries], neighbor_count=10, embeddings=True,
                                   timeout=600)
            load_s = time.perf_counter() - t
            serving_kb = rss_kb(daemon.pid, "VmRSS")
        info = built.index_info
        truth = exact_top10(data, queries)
        got = [[int(n.neighbor_id) for n in e.neighbors] for e in found.explanations]
        recall = np.mean([len(set(g) & set(t.tolist())) / 10 for g, t in zip(got, truth)])
        print(f"N={args.n} d={args.d} {info.index_type}: build {build_s:.0f}s ({build_s / args.n * 1e6:.1f} us "
              f"per example); stages " + ", ".join(f"{k} {v:.0f}s" for k, v in stages.items()))
        budget = args.n * 80 + 2**31
        print(f"peak RSS of the build process {build_peak_kb / 2**20:.2f} GiB ({build_peak_kb * 1024 / args.n:.0f} B "
              f"per example; budget N x 80 B + 2 GiB = {budget / 2**30:.2f} GiB: "
              f"{'within' if build_peak_kb * 1024 <= budget else 'OVER'}), of the daemon "
              f"{peak_build_kb / 2**20:.2f} GiB (RSS before {rss_before / 2**20:.2f} GiB; the embeddings alone are "
              f"{args.n * args.d * 4 / 2**30:.2f} GiB)")
        if info.HasField("recall"):
            print(f"the build measured recall@{info.recall.neighbor_count} {info.recall.recall:.3f} on "
                  f"{info.recall.queries} held-out examples (floor {info.recall.floor:g})")
        print(f"serving: first Explain (loads the index) {load_s:.1f}s, RSS {serving_kb / 2**20:.2f} GiB; "
              f"index_bytes {info.index_bytes / 2**30:.2f} GiB ({info.index_bytes / args.n:.1f} B per example), "
              f"mapped_bytes {info.mapped_bytes / 2**30:.2f} GiB ({info.mapped_bytes / args.n:.0f} B per example)")
        print(f"recall@10 of 100 queries against an exact scan: {recall:.3f}; status polls that took over "
              f"120 s during the build: {slow_polls}")
    finally:
        daemon.terminate()
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()


if __name__ == "__main__":
    main()
