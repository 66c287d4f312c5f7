"""FAISS index construction and placement (CPU, or GPU when asked and able).

treeAhConfig builds IVF with 4-bit product-quantizer codes (FAISS fast-scan,
`IVF{nlist},PQ{m}x4fs`, built by codes.py in a shape the build measures:
code_space.py): the approximateNeighborsCount best candidates by code are
re-ranked exactly against the full vectors, which stay in memory-mapped files
(index/vectors.py). Many queries are searched in order of their nearest list
(`search_by_list`). Indexes saved with other code shapes (format 2 before:
d/2 sub-vectors, residuals) load, search and update with the shape they were
saved with. The codes are built, saved and updated as a plain IndexIVFPQ (4
bits) and searched as its fast-scan copy (`fast_scan`): FAISS 1.15's
fast-scan lists lose entries added after a remove_ids, the plain lists do
not, and the conversion only repacks. Format 1 indexes (IVF-Flat, full
vectors in the lists) still load and search as before.

The CPU index is always kept: it is what gets saved, and it answers what a
GPU index cannot (L1, k or nprobe above the GPU limit of 2048, and filters a
GPU build does not honour).

A filter is never trusted unverified. FAISS's classic GPU kernels accept a
selector (`SearchParameters(sel=...)`) and ignore it; only builds with cuVS
filter on the GPU. So a GPU placement is probed once (`honours_selectors`),
and filtered searches on a placement that failed the probe run on the CPU
index. The index also checks every returned position against the request's
admissible mask (filtering.py), whatever the probe said."""
from __future__ import annotations

import logging
import threading

import faiss
import numpy as np

from explaind.server.index.codes import COARSE_ITERATIONS, training_rows
from explaind.server.index.config import IndexPlan, SearchConfig
from explaind.server.index.distances import faiss_metric
from explaind.server.index.gpu_codes import gpu_codes_index

log = logging.getLogger(__name__)

# FAISS GPU k-selection handles k (and nprobe) up to 2048.
GPU_MAX_K = 2048


# --index-threads (0: OpenMP's default). OpenMP keeps its thread count per
# calling thread: set once in the main thread, it would never reach the gRPC
# threads that search, so each thread applies it on its first search.
_search_threads = 0
_DEFAULT_OMP_THREADS = faiss.omp_get_max_threads()
_applied = threading.local()
_blas_limits = None


def limit_cpu_threads(threads: int) -> None:
    """--index-threads: how many cores one CPU search may spread over (FAISS's
    OpenMP and numpy's BLAS; 0 restores the defaults). Fewer than all leaves cores
    to the gRPC threads: a tighter latency tail on small nodes, for less
    throughput under load."""
    global _search_threads, _blas_limits
    import threadpoolctl

    if _blas_limits is not None:
        _blas_limits.restore_original_limits()
        _blas_limits = None
    _search_threads = max(0, threads)
    if _search_threads:
        _blas_limits = threadpoolctl.threadpool_limits(_search_threads)    # every BLAS pool loaded so far
    pin_search_threads()


def pin_search_threads() -> None:
    """This thread's OpenMP thread count set to --index-threads' (or the thread's own,
    pin_this_thread's), once a thread."""
    want = getattr(_applied, "own", 0) or _search_threads or _DEFAULT_OMP_THREADS
    if getattr(_applied, "threads", 0) != want:
        faiss.omp_set_num_threads(want)
        _applied.threads = want


def pin_this_thread(threads: int) -> None:
    """This thread's searches spread over `threads` OpenMP threads, whatever --index-threads says
    (a batch job's slices: batch/split_search.py)."""
    _applied.own = max(1, int(threads))
    pin_search_threads()


# Queries from which a flat (or coarse-quantizer) CPU search is one BLAS product
# then a top-k pass, instead of one SIMD dot product per (query, vector) pair.
# FAISS 1.15's default, 128000, keeps every batch on the pairwise path: on 100k
# x 128 (1 thread) it costs 2.5 ms a query at any batch size, where BLAS costs
# 1.6 ms at 8 queries, 0.6 at 32 and 0.45 at 64; the two break even at 4 to 8
# (5k and 100k vectors). Distances then differ by float32 rounding (squared L2
# as |q|^2 + |x|^2 - 2<q, x>, as the single-query scan computes it already).
BLAS_FROM_QUERIES = 8


def use_blas_for_batches(queries: int = BLAS_FROM_QUERIES) -> None:
    """Process-wide: CPU searches of `queries` or more go through BLAS (the serving
    process and batch jobs set it; builds and tests keep FAISS's default)."""
    faiss.cvar.distance_compute_blas_threshold = queries


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


ADD_ROWS = 1 << 16                  # vectors encoded per add() call: bounds the prepared copy
FAST_SCAN_IMPLEMENTATION = 11
# Vectors per fast-scan block: 64 scanned 3-5% faster than FAISS's default 32 on
# bench/bench_ann.py's data (1 and 2 probes, 22 and 80 candidates, 1 thread, AVX-512
# host); implementations 12 and 13 would need 32.
FAST_SCAN_BLOCK = 64
# Queries per fast-scan call (search_by_list).
FAST_SCAN_BATCH = 256


def build_cpu_index(vectors: np.ndarray, config: SearchConfig, plan: IndexPlan,
                    prepare=None) -> faiss.Index:
    """The plan's exact-vector index over `vectors` in position order: flat or
    IVF-Flat (a compressed kind's codes are built by compressed.py, in list
    order, in the shape it measures). `vectors` (n, d) may be memory-mapped;
    `prepare(block)` turns rows into what the index compares (normalized where
    the measure asks). IVF indexes hold ids = positions."""
    n, d = vectors.shape
    prepare = prepare or (lambda block: np.ascontiguousarray(block, dtype=np.float32))
    metric = faiss_metric(config)
    if plan.exact:
        index = faiss.IndexFlat(d, metric)
        index.add(prepare(vectors))
        return index
    rows = training_rows(n, plan.nlist)
    sample = prepare(vectors[rows if rows is not None else slice(None)])
    index = empty_ivf_index(d, config, plan)
    index.train(sample)
    add_rows(index, vectors, 0, prepare)
    return index


def flat_storage(cpu_index: faiss.Index) -> np.ndarray | None:
    """A flat index's vectors as a zero-copy (n, d) float32 view, valid while the
    index lives (whoever holds the view holds the index too); None for other index types."""
    if not isinstance(cpu_index, faiss.IndexFlat) or cpu_index.ntotal == 0:
        return None
    view = faiss.rev_swig_ptr(cpu_index.get_xb(), cpu_index.ntotal * cpu_index.d)
    return view.reshape(cpu_index.ntotal, cpu_index.d)


def empty_ivf_index(d: int, config: SearchConfig, plan: IndexPlan) -> faiss.Index:
    """An untrained IVF-Flat index (format 1's kind, and tests')."""
    metric = faiss_metric(config)
    quantizer = faiss.IndexFlat(d, faiss.METRIC_L2 if metric == faiss.METRIC_L1 else metric)
    index = faiss.IndexIVFFlat(quantizer, d, plan.nlist, metric)
    quantizer.this.disown()  # the IVF index owns and frees its quantizer
    index.own_fields = True
    index.cp.niter = COARSE_ITERATIONS
    index.nprobe = plan.nprobe
    return index


def fast_scan(codes: faiss.Index) -> faiss.Index:
    """The fast-scan search copy of a plain 4-bit IndexIVFPQ (same codes, repacked in blocks of FAST_SCAN_BLOCK)."""
    index = faiss.IndexIVFPQFastScan(codes, FAST_SCAN_BLOCK)
    index.nprobe = codes.nprobe
    # Result collection for the candidates a re-rank asks: implementation 11 (a reservoir,
    # query by query) measured ~10% faster than the default at k >= 40, and than 12 and 13
    # (queries grouped by list) at 4 probes or 100 candidates; equal at 1 probe and 22
    # (bench/bench_ann.py's data, 1 thread).
    index.implem = FAST_SCAN_IMPLEMENTATION
    return index


def search_by_list(index: faiss.IndexIVFFastScan, x: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:
    """index.search(x, k, params) for many queries: coarse-quantized once, then
    taken in order of their nearest list, FAST_SCAN_BATCH at a time. Consecutive
    queries then scan the same lists, whose codes are still in cache (d/2 bytes a
    vector: 64 KB for a 1000-vector list at d = 128), and each call's lookup
    tables (d x 16 floats a query) stay small. Measured on bench/bench_ann.py's
    data (1 thread, 1 probe, 22 candidates): 12.5 us a query, against 13.9 for one
    call over all 2000 queries and 15.6 for unsorted batches of 256."""
    n = len(x)
    if n <= FAST_SCAN_BATCH:
        return index.search(x, k, params=params)
    nprobe = int(params.nprobe) if isinstance(params, faiss.SearchParametersIVF) else int(index.nprobe)
    nprobe = max(1, min(nprobe, int(index.nlist)))
    x = np.ascontiguousarray(x, dtype=np.float32)
    coarse_dist, coarse_lists = index.quantizer.search(x, nprobe)
    order = np.argsort(coarse_lists[:, 0], kind="stable")
    dist = np.empty((n, k), dtype=np.float32)
    labels = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, FAST_SCAN_BATCH):
        rows = order[s:s + FAST_SCAN_BATCH]
        xs, ls, cd = x[rows], coarse_lists[rows], coarse_dist[rows]
        ds = np.empty((len(rows), k), dtype=np.float32)
        ids = np.empty((len(rows), k), dtype=np.int64)
        index.search_preassigned_c(len(rows), faiss.swig_ptr(xs), k, faiss.swig_ptr(ls), faiss.swig_ptr(cd),
                                   faiss.swig_ptr(ds), faiss.swig_ptr(ids), False, params)
        dist[rows], labels[rows] = ds, ids
    return dist, labels


def add_rows(index: faiss.Index, vectors: np.ndarray, first_position: int, prepare) -> None:
    """Adds vectors in blocks, with ids first_position, first_position + 1, ..."""
    for s in range(0, len(vectors), ADD_ROWS):
        block = prepare(vectors[s:s + ADD_ROWS])
        index.add_with_ids(block, np.arange(first_position + s, first_position + s + len(block), dtype=np.int64))


class Placement:
    """Where searches run. GPU indexes are searched under a lock: a
    StandardGpuResources (its stream and scratch memory) is not meant to be
    used by several host threads at once. CPU FAISS search is thread-safe."""

    def __init__(self, cpu_index: faiss.Index, config: SearchConfig, use_gpu: bool | None,
                 probe_vector: np.ndarray | None = None, probe_id: int = 0, vector_blocks=None):
        """`probe_vector`: the vector (as stored) of the example with id `probe_id`
        (one the index holds), for the selector probe. `vector_blocks()`: the
        full vectors as (positions, prepared rows) blocks, which a compressed
        index's GPU twin is encoded from (index/gpu_codes.py)."""
        self.cpu_index = cpu_index
        self.gpu_index = None
        self._res = None  # must outlive gpu_index
        self._lock = threading.Lock()
        want = gpu_available() if use_gpu is None else use_gpu
        if want and not gpu_available():
            log.warning("GPU requested but FAISS sees none: index stays on the CPU")
        elif want and faiss_metric(config) == faiss.METRIC_L1:
            log.info("L1 distance is not supported by FAISS GPU indexes: index stays on the CPU")
        elif want and isinstance(cpu_index, faiss.IndexIVFPQFastScan):
            self._res = faiss.StandardGpuResources()
            self.gpu_index = gpu_codes_index(self._res, cpu_index, vector_blocks) if vector_blocks else None
        elif want:
            self._res = faiss.StandardGpuResources()
            self.gpu_index = faiss.index_cpu_to_gpu(self._res, 0, cpu_index)
        # CPU FAISS honours selectors; a GPU build must show that it does.
        self.gpu_filters = self.gpu_index is None or honours_selectors(self.gpu_index, cpu_index, probe_vector,
                                                                       probe_id)
        if not self.gpu_filters:
            log.warning("this FAISS GPU build ignores search selectors (a classic build, not cuVS): "
                        "filtered searches of this index run on the CPU")

    @property
    def device(self) -> str:
        return "gpu" if self.gpu_index is not None else "cpu"

    def search(self, x: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:
        pin_search_threads()
        nprobe = getattr(params, "nprobe", 0) if params is not None else 0
        filtered = params is not None and getattr(params, "sel", None) is not None
        if self.gpu_index is not None and k <= GPU_MAX_K and nprobe <= GPU_MAX_K and \
                (self.gpu_filters or not filtered):
            with self._lock:
                return self.gpu_index.search(x, k, params=params)
        if isinstance(self.cpu_index, faiss.IndexIVFFastScan):
            return search_by_list(self.cpu_index, x, k, params)
        return self.cpu_index.search(x, k, params=params)


def honours_selectors(index, cpu_index: faiss.Index, probe_vector: np.ndarray | None, probe_id: int = 0) -> bool:
    """Whether `index` (a GPU copy of `cpu_index`) filters by a search selector: a
    selector that admits nothing must return nothing, and one that admits only
    the probe example must return it alone, queried with its own vector (so its
    IVF list is the first one probed)."""
    n = cpu_index.ntotal
    if n == 0 or probe_vector is None:
        return n == 0
    nlist = min(int(getattr(cpu_index, "nlist", 0)), GPU_MAX_K)
    query = np.ascontiguousarray(probe_vector, dtype=np.float32).reshape(1, cpu_index.d)
    nothing = np.zeros((probe_id + 8) // 8 + (n + 7) // 8, np.uint8)
    only_probe = nothing.copy()
    only_probe[probe_id // 8] = 1 << (probe_id % 8)
    for bitmap, want in ((nothing, []), (only_probe, [probe_id])):
        selector = faiss.IDSelectorBitmap(bitmap)
        params = faiss.SearchParametersIVF(sel=selector, nprobe=nlist) if nlist else \
            faiss.SearchParameters(sel=selector)
        try:
            _, ids = index.search(query, min(2, n), params=params)
        except Exception:  # noqa: BLE001 - a build that refuses selectors does not honour them
            return False
        if [int(i) for i in ids[0] if i >= 0] != want:
            return False
    return True
