"""A compressed index on the GPU: FAISS's GPU IVF-PQ (cuVS's IVF-PQ where the
FAISS build has cuVS, which the GPU cloner then uses by itself).

The CPU index's 4-bit fast-scan layout has no GPU kernel, so the GPU index is
made when the index is placed: the same coarse centroids, 8-bit codes of d/4
sub-vectors (d/4 bytes a vector, half the CPU codes), trained on a sample of
the full vectors and filled from them block by block on the GPU. Its candidates
are re-ranked on the CPU against the memory-mapped vectors, as the CPU index's
are, so answers do not depend on where the codes live.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator

import faiss
import numpy as np

log = logging.getLogger(__name__)

# Sub-quantizer counts and dimensions per sub-quantizer that FAISS's GPU IVF-PQ supports.
GPU_PQ_M = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96)
GPU_PQ_DIMS = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 28, 32)
TRAIN_POINTS = 1 << 16

Blocks = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


def gpu_pq_m(d: int) -> int:
    """8-bit sub-quantizers for d dimensions: d/4 bytes a vector where supported, else
    the supported count nearest it (0: none fits; the index stays on the CPU)."""
    fits = [m for m in GPU_PQ_M if d % m == 0 and d // m in GPU_PQ_DIMS]
    return min(fits, key=lambda m: (abs(m - d / 4), -m)) if fits else 0


def gpu_codes_index(res, cpu_index: faiss.Index, blocks: Blocks):
    """The GPU IVF-PQ twin of `cpu_index` (an IndexIVFPQFastScan), filled from
    blocks() -> (positions, prepared vectors); None when no layout fits."""
    d, nlist, metric = cpu_index.d, cpu_index.nlist, cpu_index.metric_type
    m = gpu_pq_m(d)
    if m == 0:
        log.info("no GPU IVF-PQ layout fits %d dimensions: the compressed index stays on the CPU", d)
        return None
    quantizer = faiss.IndexFlat(d, metric)
    quantizer.add(cpu_index.quantizer.reconstruct_n(0, nlist))
    index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, metric)
    quantizer.this.disown()
    index.own_fields = True
    index.nprobe = cpu_index.nprobe
    sample = []
    have = 0
    for _, block in blocks():        # the first blocks train the codebooks (a sample of the lists)
        sample.append(block[: TRAIN_POINTS - have])
        have += len(sample[-1])
        if have >= TRAIN_POINTS:
            break
    index.train(np.concatenate(sample))            # the coarse quantizer is trained already: codebooks only
    gpu_index = faiss.index_cpu_to_gpu(res, 0, index)
    for positions, block in blocks():
        gpu_index.add_with_ids(block, positions.astype(np.int64))
    gpu_index.nprobe = cpu_index.nprobe
    return gpu_index
