"""A batch job's neighbor search, its rows sliced over the job's cores.

A serving replica keeps every core busy with several batches at once (the
Engine's search threads); a job has one batch at a time. A flat index's
search of a batch is one BLAS product and a top-k pass on one core (measured:
CPU time equals wall time with FAISS's OpenMP at 2 threads), so a job on N
cores would leave N - 1 of them idle for most of its rows. Each slice runs in
a thread of its own (FAISS releases the GIL), with one OpenMP thread: an IVF
search, which spreads its queries over OpenMP threads itself, gets the same
cores, not N times as many threads. Each row's search is its own, so the
answer is the rows' answers in order, whatever the slicing.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..index.backend import pin_this_thread
from ..index.example_index import ExampleIndex

# Rows a slice holds at least: below this, a thread's start and the smaller
# BLAS product cost more than the core saves.
MIN_SLICE_ROWS = 128


class SplitSearch:
    def __init__(self, index: ExampleIndex, cores: int):
        self.index = index
        self.slices = max(1, int(cores)) if index.device == "cpu" else 1
        self._pool = ThreadPoolExecutor(self.slices, thread_name_prefix="job-search", initializer=pin_this_thread, initargs=(1,)) \
            if self.slices > 1 else None

    def search(self, vectors: np.ndarray, neighbor_count: int, restricts, crowding_count: int):
        """index.search_arrays over the rows, sliced: (positions, distances) in row order."""
        n = len(vectors)
        slices = min(self.slices, n // MIN_SLICE_ROWS)
        if self._pool is None or slices < 2:
            return self.index.search_arrays(vectors, neighbor_count, restricts=restricts,
                                            crowding_count=crowding_count)
        bounds = np.linspace(0, n, slices + 1).astype(int)
        futures = [self._pool.submit(self.index.search_arrays, vectors[a:b], neighbor_count,
                                     restricts[a:b] if restricts is not None else None, crowding_count)
                   for a, b in zip(bounds[:-1], bounds[1:])]
        parts = [f.result() for f in futures]
        return np.concatenate([p for p, _ in parts]), np.concatenate([d for _, d in parts])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
