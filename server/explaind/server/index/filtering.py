"""Candidate generation under a restricts mask, by selectivity.

A provider is called as fetch(queries, k) and returns (distances, positions,
exhausted): (r, k) arrays sorted nearest first, position -1 / distance inf
where fewer than k admissible candidates came back, and per row whether that
is all this index can reach (so widening k cannot help).

Strategies, for m admissible examples among N (S = the vectors an
unfiltered search scans: N for Flat, N * nprobe / nlist for IVF):
  m == N (or no filter)        plain FAISS search; a single query on a CPU flat
                               index scans with one BLAS product instead.
  m <= max(4096, min(65536, S / 4))   (GPU: m <= 2048)
                               exact numpy search over just those m vectors:
                               a BLAS product over m rows costs less than the
                               full scan, and is exact even on an IVF index.
                               65536 bounds the gathered copy (32 MB at d=128).
  m >= 20% of N                FAISS search for about k * N / m * 1.5 + 32
                               unfiltered candidates, dropping inadmissible
                               ones: a wide filter costs a slightly larger k.
                               Rows left short (filter correlated with
                               distance) fall back to the selector.
  otherwise                    FAISS search with an IDSelectorBitmap (FAISS
                               then computes distances only for selected ids);
                               on IVF, rows left short retry with 4x nprobe up
                               to nlist, so the count is min(k, m) there too.
Thresholds come from bench/bench_filtered_search.py and probes on
100k-200k x 128 on 2 CPU cores; the GPU threshold is a guess (unmeasured).

A compressed index (codes in the lists) answers every FAISS search in two
steps: `approximate` fetches candidates by their codes, `refine` re-ranks
them against the full vectors and keeps the k nearest. Only admissible
candidates reach the re-rank (the selector admits nothing else; the
post-filter drops the others first), so filters stay exact. Removed examples
(an update's tombstones) are out of the FAISS index and out of every mask.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable

import faiss
import numpy as np

from explaind.server.index import distances
from explaind.server.index.backend import Placement
from explaind.server.index.config import SearchConfig, rerank_count
from explaind.server.index.vectors import HeldVectors, Vectors

log = logging.getLogger(__name__)
# rows of queries x subset distances computed at once (~64 MB of float32)
_SUBSET_CHUNK = 16 << 20
STRATEGIES = ("subset", "postfilter", "selector")


@dataclasses.dataclass(frozen=True)
class FilterPolicy:
    """The selectivity bands above (the numbers there are these defaults).
    `force` names one strategy for every filtered search (tests use it to reach
    each path on small data)."""
    subset_min_rows: int = 4096
    subset_max_rows: int = 65536
    subset_scan_fraction: float = 0.25
    gpu_subset_max_rows: int = 2048
    postfilter_min_fraction: float = 0.2
    postfilter_max_k: int = 2048
    # A crowded search that needs more candidates than this scans every admissible
    # example once instead (a few tags crowd out everything).
    crowding_max_fetch: int = 4096
    force: str | None = None

    def __post_init__(self):
        if self.force is not None and self.force not in STRATEGIES:
            raise ValueError(f"force must be one of {STRATEGIES}, got {self.force!r}")


@dataclasses.dataclass(frozen=True)
class SearchContext:
    """What the strategies read of an index: never written after the index is made."""
    placement: Placement
    vectors: Vectors             # the full vectors, by position
    config: SearchConfig
    nlist: int                   # 0 for a flat index
    nprobe: int
    compressed: bool = False     # FAISS returns approximate distances: re-rank
    live: np.ndarray | None = None   # False for removed positions; None: none removed

    @property
    def size(self) -> int:
        """Positions, removed ones included."""
        return self.vectors.size

    @property
    def live_count(self) -> int:
        return self.size if self.live is None else int(np.count_nonzero(self.live))


class Candidates:
    def __init__(self, context: SearchContext, policy: FilterPolicy):
        self.context = context
        self.policy = policy

    def provider(self, mask: np.ndarray | None, on_violation: Callable[[int], None] | None = None):
        """`mask`: admissible positions (removed ones already excluded), None
        for every live one. `on_violation(rows)`: told when a strategy returned
        an inadmissible example (rows answered again by the exact path)."""
        n = self.context.size
        live = self.context.live_count
        m = live if mask is None else int(np.count_nonzero(mask))
        if mask is None or m == n or m == 0:       # m == 0: never called (admissible == 0)
            return _Provider(self._all, m)
        strategy = self.policy.force or self._strategy(m, n)
        if strategy == "subset":
            fetch = _Subset(self, np.flatnonzero(mask))
        elif strategy == "postfilter":
            fetch = _PostFilter(self, mask, m)
        else:
            fetch = _Selector(self, mask, m)
        return _Provider(_Verified(fetch, self, mask, on_violation), m)

    def _strategy(self, m: int, n: int) -> str:
        if m <= self._subset_max():
            return "subset"
        if m >= self.policy.postfilter_min_fraction * n:
            return "postfilter"
        return "selector"

    def _subset_max(self) -> float:
        ctx, policy = self.context, self.policy
        if ctx.placement.device == "gpu":
            return policy.gpu_subset_max_rows
        scanned = ctx.size * ctx.nprobe / ctx.nlist if ctx.nlist else ctx.size
        return max(policy.subset_min_rows, min(policy.subset_max_rows, policy.subset_scan_fraction * scanned))

    # --- the plain FAISS search, scores converted and missing results padded
    def faiss_search(self, q: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest by FAISS, with exact distances (re-ranked when compressed)."""
        fetch = rerank_count(self.context.config, k) if self.context.compressed else k
        dist, pos = self.approximate(q, fetch, params)
        return self.refine(q, dist, pos, k)

    def approximate(self, q: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's k best: exact distances for exact indexes, code distances for compressed ones."""
        k = min(k, self.context.size)
        scores, pos = self.context.placement.search(q, k, params=params)
        dist = distances.from_faiss(scores, self.context.config).astype(np.float32, copy=False)
        dist[pos < 0] = np.inf
        return dist, pos

    def refine(self, q: np.ndarray, dist: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest of the candidates (pos < 0: none), sorted, padded with -1 / inf:
        by exact distance on a compressed index, else in FAISS's order."""
        if self.context.compressed:
            dist = self.context.vectors.exact(q, pos)
        else:
            dist = np.where(pos >= 0, dist, np.inf).astype(np.float32, copy=False)
        k = min(k, pos.shape[1])
        if k < pos.shape[1]:      # the k best first (unordered), then only those sorted
            part = np.argpartition(dist, k - 1, axis=1)[:, :k]
            dist, pos = np.take_along_axis(dist, part, axis=1), np.take_along_axis(pos, part, axis=1)
        order = np.argsort(dist, axis=1, kind="stable")
        dist = np.take_along_axis(dist, order, axis=1)
        pos = np.take_along_axis(pos, order, axis=1)
        pos[~np.isfinite(dist)] = -1
        return dist, pos

    def _all(self, q: np.ndarray, k: int):
        if self._scan_beats_faiss(len(q)):
            return self._scan_all(q, k)
        dist, pos = self.faiss_search(q, k)
        return dist, pos, (pos >= 0).sum(axis=1) < k

    def _scan_beats_faiss(self, rows: int) -> bool:
        # FAISS's flat CPU search parallelizes over queries, so a single query scans on
        # one core; one BLAS matrix-vector product uses them all (1.3-1.7x faster on 2
        # cores at 100k-400k x 128, more with more cores). Two queries or more: FAISS.
        return (rows == 1 and not self.context.nlist and self.context.placement.device == "cpu"
                and self.context.config.distance != "L1_DISTANCE" and isinstance(self.context.vectors, HeldVectors))

    def _scan_all(self, q: np.ndarray, k: int):
        exhausted = np.full(len(q), k >= self.context.size)   # asked for all there is
        k = min(k, self.context.size)
        dist = self.context.vectors.distances_to_all(q)
        d, pos = distances.top_k(dist, k)
        return d.astype(np.float32, copy=False), pos.astype(np.int64, copy=False), exhausted


class _Provider:
    def __init__(self, fetch, admissible: int):
        self._fetch = fetch
        self.admissible = admissible

    def __call__(self, q: np.ndarray, k: int):
        return self._fetch(q, k)


class _Verified:
    """Checks every returned position against the admissible mask (k lookups a
    row) before it leaves the index: a placement that ignored the filter (a
    GPU build without selector support) is caught here, logged, reported and
    answered again by the exact subset scan."""

    def __init__(self, fetch, cand: Candidates, mask: np.ndarray, on_violation: Callable[[int], None] | None):
        self._fetch = fetch
        self._cand = cand
        self._mask = mask
        self._on_violation = on_violation

    def __call__(self, q: np.ndarray, k: int):
        dist, pos, exhausted = self._fetch(q, k)
        found = pos >= 0
        bad = np.flatnonzero((found & ~self._mask[np.where(found, pos, 0)]).any(axis=1))
        if bad.size:
            log.warning("a filtered search returned examples its filter excludes; answered by the exact path",
                        extra={"rows": int(bad.size), "device": self._cand.context.placement.device,
                               "strategy": type(self._fetch).__name__})
            if self._on_violation is not None:
                self._on_violation(int(bad.size))
            exact = _Subset(self._cand, np.flatnonzero(self._mask))
            dist[bad], pos[bad], exhausted[bad] = exact(q[bad], k)
        return dist, pos, exhausted


class _Subset:
    def __init__(self, cand: Candidates, positions: np.ndarray):
        self._cand = cand
        self._positions = positions
        self._vectors = cand.context.vectors.prepared(positions)  # gathered once per query group

    def __call__(self, q: np.ndarray, k: int):
        m = len(self._positions)
        k = min(k, m)
        dist = np.empty((len(q), k), dtype=np.float32)
        pos = np.empty((len(q), k), dtype=np.int64)
        step = max(1, _SUBSET_CHUNK // max(1, m))
        for s in range(0, len(q), step):
            full = distances.exact_distances(q[s:s + step], self._vectors, self._cand.context.config)
            d, cols = distances.top_k(full, k)
            dist[s:s + step] = d
            pos[s:s + step] = self._positions[cols]
        return dist, pos, np.full(len(q), k >= m)


class _Selector:
    def __init__(self, cand: Candidates, mask: np.ndarray, m: int):
        self._cand = cand
        self._m = m
        self._bitmap = np.packbits(mask, bitorder="little")  # kept alive for the selector
        self._sel = faiss.IDSelectorBitmap(self._bitmap)

    def _params(self, nprobe: int):
        if nprobe:
            return faiss.SearchParametersIVF(sel=self._sel, nprobe=nprobe)
        return faiss.SearchParameters(sel=self._sel)

    def __call__(self, q: np.ndarray, k: int):
        cand = self._cand
        nprobe = cand.context.nprobe
        dist, pos = cand.faiss_search(q, k, self._params(nprobe))
        want = min(k, self._m)
        # IVF: the probed lists may hold too few admissible examples; probe more.
        short = np.flatnonzero((pos >= 0).sum(axis=1) < want)
        while short.size and nprobe and nprobe < cand.context.nlist:
            nprobe = min(cand.context.nlist, nprobe * 4)
            d2, p2 = cand.faiss_search(q[short], k, self._params(nprobe))
            dist[short], pos[short] = d2, p2
            short = short[(p2 >= 0).sum(axis=1) < want]
        return dist, pos, (pos >= 0).sum(axis=1) < k


class _PostFilter:
    def __init__(self, cand: Candidates, mask: np.ndarray, m: int):
        self._cand = cand
        self._mask = mask
        self._m = m
        self._selector: _Selector | None = None

    def __call__(self, q: np.ndarray, k: int):
        cand = self._cand
        # A compressed index re-ranks its candidate count of admissible ones.
        want = rerank_count(cand.context.config, k) if cand.context.compressed else k
        raw = min(cand.context.size, math.ceil(want * cand.context.size / self._m * 1.5) + 32)
        if raw > cand.policy.postfilter_max_k:
            return self._fallback()(q, k)
        dist, pos = cand.approximate(q, raw)
        ok = (pos >= 0) & self._mask[np.maximum(pos, 0)]
        pos = np.where(ok, pos, -1)
        dist, pos = cand.refine(q, dist, pos, k)
        count = (pos >= 0).sum(axis=1)
        exhausted = np.zeros(len(q), dtype=bool)
        if raw >= cand.context.size and not cand.context.nlist:
            exhausted[:] = count < k  # an exact scan of everything: nothing more to find
        else:
            short = np.flatnonzero(count < min(k, self._m))
            if short.size:
                d2, p2, e2 = self._fallback()(q[short], k)
                dist[short], pos[short], exhausted[short] = d2, p2, e2
        return dist, pos, exhausted

    def _fallback(self) -> _Selector:
        if self._selector is None:
            self._selector = _Selector(self._cand, self._mask, self._m)
        return self._selector
