"""One search call's FAISS searches: scores turned into distances, a compressed
index's candidates re-ranked exactly, and the single-query scan that beats
FAISS on a CPU flat index.

A compressed index (codes in the lists) answers every FAISS search in two
steps: `approximate` fetches candidates by their codes, `refine` re-ranks
them against the full vectors and keeps the k nearest."""
from __future__ import annotations

import dataclasses

import faiss
import numpy as np

from explaind.server.index import distances
from explaind.server.index.backend import Placement
from explaind.server.index.code_space import CodeSpace
from explaind.server.index.config import SearchConfig, rerank_count
from explaind.server.index.vectors import HeldVectors, Vectors


@dataclasses.dataclass(frozen=True)
class SearchContext:
    """What a search reads of an index, with the call's knobs applied
    (search_params.py: its config's approximateNeighborsCount, its nprobe).
    Frozen: a call that turns a knob searches a copy."""
    placement: Placement
    vectors: Vectors             # the full vectors, by position
    config: SearchConfig
    nlist: int                   # 0 for a flat index
    nprobe: int
    live_count: int              # examples not removed
    compressed: bool = False     # FAISS returns approximate distances: re-rank
    space: CodeSpace = dataclasses.field(default_factory=CodeSpace)   # what FAISS's vectors are (code_space.py)

    @property
    def size(self) -> int:
        """Positions, removed ones included."""
        return self.vectors.size


class FaissSearch:
    def __init__(self, context: SearchContext):
        self.context = context

    def nearest(self, q: np.ndarray, k: int, faiss_params=None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest by FAISS, with exact distances (re-ranked when compressed)."""
        fetch = rerank_count(self.context.config, k) if self.context.compressed else k
        dist, pos = self.approximate(q, fetch, faiss_params)
        return self.refine(q, dist, pos, k)

    def approximate(self, q: np.ndarray, k: int, faiss_params=None) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's k best: exact distances for exact indexes, code distances for
        compressed ones. `faiss_params` (a selector's) carry their own nprobe."""
        k = min(k, self.context.size)
        params = faiss_params if faiss_params is not None else self._probe_params()
        scores, pos = self.context.placement.search(self.context.space.apply(q), k, params=params)
        dist = distances.from_faiss(scores, self.context.config).astype(np.float32, copy=False)
        dist[pos < 0] = np.inf
        return dist, pos

    def _probe_params(self):
        """The call's nprobe where it is not the one the index was built with."""
        ctx = self.context
        if not ctx.nlist or ctx.nprobe == int(ctx.placement.cpu_index.nprobe):
            return None
        return faiss.SearchParametersIVF(nprobe=ctx.nprobe)

    def refine(self, q: np.ndarray, dist: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest of the candidates (pos < 0: none), sorted, padded with -1 / inf:
        by exact distance on a compressed index, else in FAISS's order."""
        if self.context.compressed:
            dist = self.context.vectors.exact(q, pos)
        else:
            dist = np.where(pos >= 0, dist, np.inf).astype(np.float32, copy=False)
        dist, columns = distances.top_k(dist, k)
        pos = np.take_along_axis(pos, columns, axis=1)
        pos[~np.isfinite(dist)] = -1
        return dist, pos

    def unfiltered(self, q: np.ndarray, k: int):
        """(distances, positions, exhausted) of the k nearest of all live examples."""
        if self._scan_beats_faiss(len(q)):
            return self._scan_all(q, k)
        dist, pos = self.nearest(q, k)
        return dist, pos, (pos >= 0).sum(axis=1) < k

    def _scan_beats_faiss(self, rows: int) -> bool:
        # FAISS's flat CPU search parallelizes over queries, so a single query scans on
        # one core; one BLAS matrix-vector product uses them all (1.3-1.7x faster on 2
        # cores at 100k-400k x 128, more with more cores). Two queries or more: FAISS.
        ctx = self.context
        return (rows == 1 and not ctx.nlist and ctx.placement.device == "cpu"
                and ctx.config.distance != "L1_DISTANCE" and isinstance(ctx.vectors, HeldVectors))

    def _scan_all(self, q: np.ndarray, k: int):
        exhausted = np.full(len(q), k >= self.context.size)   # asked for all there is
        d, pos = distances.top_k(self.context.vectors.distances_to_all(q), k)
        return d.astype(np.float32, copy=False), pos.astype(np.int64, copy=False), exhausted
