"""FAISS index construction and placement (CPU, or GPU when asked and able).

treeAhConfig builds IVF-Flat: lists hold full float32 vectors, so returned
distances are exact and recall depends on nprobe alone; there is no
compressed code to re-rank, and approximateNeighborsCount is recorded but
does not change the search.

The CPU index is always kept: it is what gets saved, and it answers what a
GPU index cannot (L1, k or nprobe above the GPU limit of 2048)."""
from __future__ import annotations

import logging
import threading

import faiss
import numpy as np

from explaind.server.index.config import IndexPlan, SearchConfig
from explaind.server.index.distances import faiss_metric

log = logging.getLogger(__name__)

# FAISS GPU k-selection handles k (and nprobe) up to 2048.
GPU_MAX_K = 2048
# k-means samples at most this many points per list (FAISS's own default cap),
# drawn here with a fixed seed so builds are reproducible.
TRAIN_POINTS_PER_LIST = 256
TRAIN_SEED = 1234


def limit_cpu_threads(threads: int) -> None:
    """--index-threads: how many cores one CPU search may spread over (FAISS's
    OpenMP and numpy's BLAS; 0 keeps all). Fewer than all leaves cores to the gRPC
    threads: a tighter latency tail on small nodes, for less throughput under load."""
    if threads <= 0:
        return
    import threadpoolctl

    faiss.omp_set_num_threads(threads)
    threadpoolctl.threadpool_limits(threads)    # every BLAS and OpenMP pool loaded so far


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def build_cpu_index(vectors: np.ndarray, config: SearchConfig, plan: IndexPlan) -> faiss.Index:
    n, d = vectors.shape
    metric = faiss_metric(config)
    if plan.exact:
        index = faiss.IndexFlat(d, metric)
    else:
        quantizer = faiss.IndexFlat(d, metric)
        index = faiss.IndexIVFFlat(quantizer, d, plan.nlist, metric)
        quantizer.this.disown()  # the IVF index owns and frees its quantizer
        index.own_fields = True
        train = vectors
        cap = plan.nlist * TRAIN_POINTS_PER_LIST
        if n > cap:
            rows = np.random.default_rng(TRAIN_SEED).choice(n, cap, replace=False)
            train = vectors[np.sort(rows)]
        index.train(train)
        index.nprobe = plan.nprobe
    index.add(vectors)
    return index


class Placement:
    """Where searches run. GPU indexes are searched under a lock: a
    StandardGpuResources (its stream and scratch memory) is not meant to be
    used by several host threads at once. CPU FAISS search is thread-safe."""

    def __init__(self, cpu_index: faiss.Index, config: SearchConfig, use_gpu: bool | None):
        self.cpu_index = cpu_index
        self.gpu_index = None
        self._res = None  # must outlive gpu_index
        self._lock = threading.Lock()
        want = gpu_available() if use_gpu is None else use_gpu
        if want and not gpu_available():
            log.warning("GPU requested but FAISS sees none: index stays on the CPU")
        elif want and faiss_metric(config) == faiss.METRIC_L1:
            log.info("L1 distance is not supported by FAISS GPU indexes: index stays on the CPU")
        elif want:
            self._res = faiss.StandardGpuResources()
            self.gpu_index = faiss.index_cpu_to_gpu(self._res, 0, cpu_index)

    @property
    def device(self) -> str:
        return "gpu" if self.gpu_index is not None else "cpu"

    def search(self, x: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:
        nprobe = getattr(params, "nprobe", 0) if params is not None else 0
        if self.gpu_index is not None and k <= GPU_MAX_K and nprobe <= GPU_MAX_K:
            with self._lock:
                return self.gpu_index.search(x, k, params=params)
        return self.cpu_index.search(x, k, params=params)
