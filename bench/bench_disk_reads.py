"""Bytes a query reads from disk when a compressed index's vectors are not in
the page cache, and its latency cold and warm (Linux).

    .venv/bin/python bench/bench_disk_reads.py [--shape lowdim] [--n 200000] [--d 128] [--queries 200]
        [--candidates 100] [--reads mapped,direct] [--baseline]
    .venv/bin/python bench/bench_disk_reads.py --index DIR --segments DIR    # a built index (bench_scale --keep)

Builds (or loads) a treeAh index whose every search re-ranks --candidates
rows (approximateNeighborsCount), saves it and loads it as a replica serves
it (segments memory-mapped). Then, one query at a time as an Explain sends
it: the segment files are evicted from the page cache (fsync, then
posix_fadvise DONTNEED), the query is searched (cold), /proc/self/io's
read_bytes gives what it read from disk, and the same query is searched again
(warm). Prints the bytes read a query against the bytes of the rows it
re-ranks (candidates x d x 4: goal <= 4x), and cold and warm latency, for
each way of reading the rows (--reads, index/row_reads.py): mapped (4 KiB
pages through the page cache) and direct (O_DIRECT, the 512-byte blocks of
the rows, never cached: its warm query reads the disk again).

--baseline also measures the index as it was before segments were written in
list order and advised MADV_RANDOM: the same build with its segment rewritten
in position order and mapped with the kernel's default read-ahead.

The figures depend on the disk and the kernel (read_ahead_kb, the page size);
on a shared machine latency also measures the others' I/O. The page cache is
the machine's: eviction is per file and affects nothing else of the run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from unittest import mock

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ann_data  # noqa: E402 - the bench's data sets, beside this file
from tests.page_cache import evict, read_bytes  # noqa: E402 - shared with the read-amplification tests

from explaind.server.index import ExampleIndex, search_config_from_json  # noqa: E402
from explaind.server.index.backend import limit_cpu_threads  # noqa: E402
from explaind.server.index import row_reads  # noqa: E402
from explaind.server.index import segments as segment_files  # noqa: E402
from explaind.server.index.meta import IndexMeta  # noqa: E402
from explaind.server.index.vectors import segment_path  # noqa: E402


def measure(index: ExampleIndex, files: list[str], queries: np.ndarray, k: int) -> dict:
    """Per query: bytes read cold, latency cold and warm (seconds)."""
    read, cold, warm = [], [], []
    for q in queries:
        evict(files, getattr(index.contents.vectors, "segments", ()))
        before, t = read_bytes(), time.perf_counter()
        index.search_arrays(q[None], k)
        cold.append(time.perf_counter() - t)
        read.append(read_bytes() - before)
        t = time.perf_counter()
        index.search_arrays(q[None], k)
        warm.append(time.perf_counter() - t)
    return {"read": np.array(read), "cold": np.array(cold), "warm": np.array(warm)}


def report(label: str, got: dict, row_bytes: int, candidates: int) -> None:
    wanted = candidates * row_bytes
    read = got["read"]
    print(f"{label}: read {read.mean() / 1024:8.1f} KiB a query (median {np.median(read) / 1024:.1f}, "
          f"p90 {np.percentile(read, 90) / 1024:.1f}) for {wanted / 1024:.1f} KiB of candidate rows: "
          f"{read.mean() / wanted:5.2f}x; latency cold p50 {np.median(got['cold']) * 1e3:.2f} ms "
          f"p99 {np.percentile(got['cold'], 99) * 1e3:.2f} ms, warm p50 {np.median(got['warm']) * 1e3:.3f} ms "
          f"p99 {np.percentile(got['warm'], 99) * 1e3:.3f} ms", flush=True)


def in_position_order(folder: str, segments_folder: str) -> None:
    """Rewrites a saved index's segments in position order and drops its row map (the layout before list order)."""
    meta = IndexMeta.read(folder)
    rows_file = os.path.join(folder, "segment_rows.npy")
    rows = np.load(rows_file) if os.path.exists(rows_file) else None
    start = 0
    for seg in meta.segments:
        path = segment_path(segments_folder, seg.name)
        data = np.load(path, mmap_mode="r")
        local = rows[start:start + seg.rows] if rows is not None else np.arange(seg.rows)
        with open(path + ".tmp", "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (seg.rows, data.shape[1])})
            for s in range(0, seg.rows, 1 << 16):
                f.write(np.ascontiguousarray(data[local[s:s + (1 << 16)]]).tobytes())
        os.replace(path + ".tmp", path)
        start += seg.rows
    if rows is not None:
        os.unlink(rows_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ann_data.add_data_arguments(parser)
    parser.add_argument("--reads", default="mapped,direct",
                        help="how the re-rank reads rows, comma-separated: mapped, direct")
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--index", default="", help="a saved index folder instead of a build")
    parser.add_argument("--segments", default="", help="its segments folder")
    parser.add_argument("--scratch", default=tempfile.gettempdir())
    parser.add_argument("--threads", type=int, default=1, help="FAISS and BLAS threads a search may use")
    args = parser.parse_args()
    limit_cpu_threads(args.threads)     # FAISS's OpenMP in each searching thread and numpy's BLAS
    modes = [m.strip() for m in args.reads.split(",") if m.strip()]
    if not modes or any(m not in (row_reads.MAPPED, row_reads.DIRECT) for m in modes):
        parser.error(f"--reads: a comma-separated list of {row_reads.MAPPED}, {row_reads.DIRECT}")
    k = 10
    scratch = tempfile.mkdtemp(prefix="explaind-disk-", dir=args.scratch)
    try:
        if args.index:
            folder, segments_folder = args.index, args.segments or args.index
            meta = IndexMeta.read(folder)
            d = meta.dimensions
            x_q = np.random.default_rng(7).standard_normal((args.queries, d)).astype(np.float32)
            loaded = ExampleIndex.load(folder, use_gpu=False, segments_folder=segments_folder)
            queries = loaded.embeddings_of(np.sort(np.random.default_rng(8).choice(
                loaded.size, args.queries, replace=False))) + 0.01 * x_q
            candidates = int(meta.config.approximate_neighbors_count) or 20 * k
        else:
            x, queries = ann_data.make(args.shape, args.n, args.queries, args.d)
            config = search_config_from_json({
                "dimensions": args.d, "distanceMeasureType": "SQUARED_L2_DISTANCE",
                "approximateNeighborsCount": args.candidates,
                "algorithmConfig": {"treeAhConfig": {"leafNodeEmbeddingCount": 1000}}}, k, "config")
            folder = segments_folder = os.path.join(scratch, "index")
            os.makedirs(folder)
            t = time.process_time()
            ExampleIndex.build(x, [str(i) for i in range(args.n)], None, None, config, use_gpu=False).save(folder)
            print(f"{args.shape}: N={args.n} d={args.d}, built and saved in {time.process_time() - t:.0f} CPU-s")
            del x
            loaded = ExampleIndex.load(folder, use_gpu=False)
            candidates, d = args.candidates, args.d
        files = [segment_path(segments_folder, n) for n in loaded.segment_names]
        print(f"{loaded.info.index_type}, nprobe {loaded.info.nprobe}, {candidates} candidates re-ranked, "
              f"{sum(os.path.getsize(f) for f in files) / 2**30:.2f} GiB of segments; "
              f"read_ahead_kb {open('/sys/block/' + _disk_of(files[0]) + '/queue/read_ahead_kb').read().strip()}"
              if _disk_of(files[0]) else "")
        del loaded
        for mode in modes:
            index = ExampleIndex.load(folder, use_gpu=False, segments_folder=segments_folder, rerank_reads=mode)
            if index.rerank_reads != mode:
                print(f"{mode}: not possible on this file system (the mapping is read)")
                continue
            label = "mapped, list order + MADV_RANDOM" if mode == row_reads.MAPPED else "direct, 512-byte blocks"
            report(label, measure(index, files, queries, k), d * 4, candidates)
            del index
        if args.baseline:
            copy = os.path.join(scratch, "baseline")
            shutil.copytree(folder, copy, dirs_exist_ok=True)
            seg_copy = copy if segments_folder == folder else os.path.join(scratch, "baseline-segments")
            if seg_copy != copy:
                shutil.copytree(segments_folder, seg_copy)
            in_position_order(copy, seg_copy)
            with mock.patch.object(segment_files, "open_segment",
                                   lambda path, random_access=True: np.load(path, mmap_mode="r")):
                before = ExampleIndex.load(copy, use_gpu=False, segments_folder=seg_copy)
            files = [segment_path(seg_copy, n) for n in before.segment_names]
            report("position order, read-ahead (before)", measure(before, files, queries, k), d * 4, candidates)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _disk_of(path: str) -> str:
    """The block device under a file (for its read_ahead_kb), '' when unknown."""
    try:
        dev = os.stat(path).st_dev
        name = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"))
        parent = os.path.basename(os.path.dirname(os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")))
        return name if os.path.exists(f"/sys/block/{name}") else parent
    except OSError:
        return ""


if __name__ == "__main__":
    main()
