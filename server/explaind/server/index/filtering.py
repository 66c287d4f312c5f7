"""The filtering strategies: which one fetches a search's candidates under a
restricts mask, chosen by selectivity (`FilterStrategies.choose`).

A strategy is called as fetch(queries, k) and returns (distances, positions,
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
The thresholds (search_params.FilterPolicy) come from
bench/bench_filtered_search.py and probes on 100k-200k x 128 on 2 CPU cores;
the GPU threshold is a guess (unmeasured).

On a compressed index (faiss_search.py: candidates by their codes, then an
exact re-rank) only admissible candidates reach the re-rank (the selector
admits nothing else; the post-filter drops the others first), so filters stay
exact. Removed examples
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
from explaind.server.index.config import rerank_count
from explaind.server.index.faiss_search import FaissSearch
from explaind.server.index.search_params import FilterPolicy

log = logging.getLogger(__name__)
# rows of queries x subset distances computed at once (~64 MB of float32)
_SUBSET_CHUNK = 16 << 20

Fetch = Callable[[np.ndarray, int], tuple]


@dataclasses.dataclass(frozen=True)
class Strategy:
    """The strategy chosen for one admissible mask: fetch(queries, k), and how
    many examples it can return at most."""
    fetch: Fetch
    admissible: int

    def __call__(self, q: np.ndarray, k: int):
        return self.fetch(q, k)


class FilterStrategies:
    def __init__(self, search: FaissSearch, policy: FilterPolicy):
        self.search = search
        self.policy = policy

    def choose(self, mask: np.ndarray | None, on_violation: Callable[[int], None] | None = None) -> Strategy:
        """`mask`: admissible positions (removed ones already excluded), None
        for every live one. `on_violation(rows)`: told when a strategy returned
        an inadmissible example (rows answered again by the exact path)."""
        ctx = self.search.context
        n = ctx.size
        m = ctx.live_count if mask is None else int(np.count_nonzero(mask))
        if mask is None or m == n or m == 0:       # m == 0: never called (admissible == 0)
            return Strategy(self.search.unfiltered, m)
        strategy = self.policy.force or self._strategy(m, n)
        if strategy == "subset":
            fetch = _Subset(self.search, np.flatnonzero(mask))
        elif strategy == "postfilter":
            fetch = _PostFilter(self.search, self.policy, mask, m)
        else:
            fetch = _Selector(self.search, mask, m)
        return Strategy(_Verified(fetch, self.search, mask, on_violation), m)

    def _strategy(self, m: int, n: int) -> str:
        if m <= self._subset_max():
            return "subset"
        if m >= self.policy.postfilter_min_fraction * n:
            return "postfilter"
        return "selector"

    def _subset_max(self) -> float:
        ctx, policy = self.search.context, self.policy
        if ctx.placement.device == "gpu":
            return policy.gpu_subset_max_rows
        scanned = ctx.size * ctx.nprobe / ctx.nlist if ctx.nlist else ctx.size
        return max(policy.subset_min_rows, min(policy.subset_max_rows, policy.subset_scan_fraction * scanned))


class _Verified:
    """Checks every returned position against the admissible mask (k lookups a
    row) before it leaves the index: a placement that ignored the filter (a
    GPU build without selector support) is caught here, logged, reported and
    answered again by the exact subset scan."""

    def __init__(self, fetch: Fetch, search: FaissSearch, mask: np.ndarray,
                 on_violation: Callable[[int], None] | None):
        self._fetch = fetch
        self._search = search
        self._mask = mask
        self._on_violation = on_violation

    def __call__(self, q: np.ndarray, k: int):
        dist, pos, exhausted = self._fetch(q, k)
        found = pos >= 0
        bad = np.flatnonzero((found & ~self._mask[np.where(found, pos, 0)]).any(axis=1))
        if bad.size:
            log.warning("a filtered search returned examples its filter excludes; answered by the exact path",
                        extra={"rows": int(bad.size), "device": self._search.context.placement.device,
                               "strategy": type(self._fetch).__name__})
            if self._on_violation is not None:
                self._on_violation(int(bad.size))
            exact = _Subset(self._search, np.flatnonzero(self._mask))
            dist[bad], pos[bad], exhausted[bad] = exact(q[bad], k)
        return dist, pos, exhausted


class _Subset:
    def __init__(self, search: FaissSearch, positions: np.ndarray):
        self._config = search.context.config
        self._positions = positions
        self._vectors = search.context.vectors.prepared(positions)  # gathered once per query group

    def __call__(self, q: np.ndarray, k: int):
        m = len(self._positions)
        k = min(k, m)
        dist = np.empty((len(q), k), dtype=np.float32)
        pos = np.empty((len(q), k), dtype=np.int64)
        step = max(1, _SUBSET_CHUNK // max(1, m))
        for s in range(0, len(q), step):
            full = distances.exact_distances(q[s:s + step], self._vectors, self._config)
            d, cols = distances.top_k(full, k)
            dist[s:s + step] = d
            pos[s:s + step] = self._positions[cols]
        return dist, pos, np.full(len(q), k >= m)


class _Selector:
    def __init__(self, search: FaissSearch, mask: np.ndarray, m: int):
        self._search = search
        self._m = m
        self._bitmap = np.packbits(mask, bitorder="little")  # kept alive for the selector
        self._sel = faiss.IDSelectorBitmap(self._bitmap)

    def _params(self, nprobe: int):
        if nprobe:
            return faiss.SearchParametersIVF(sel=self._sel, nprobe=nprobe)
        return faiss.SearchParameters(sel=self._sel)

    def __call__(self, q: np.ndarray, k: int):
        search, nlist = self._search, self._search.context.nlist
        nprobe = search.context.nprobe
        dist, pos = search.nearest(q, k, self._params(nprobe))
        want = min(k, self._m)
        # IVF: the probed lists may hold too few admissible examples; probe more.
        short = np.flatnonzero((pos >= 0).sum(axis=1) < want)
        while short.size and nprobe and nprobe < nlist:
            nprobe = min(nlist, nprobe * 4)
            d2, p2 = search.nearest(q[short], k, self._params(nprobe))
            dist[short], pos[short] = d2, p2
            short = short[(p2 >= 0).sum(axis=1) < want]
        return dist, pos, (pos >= 0).sum(axis=1) < k


class _PostFilter:
    def __init__(self, search: FaissSearch, policy: FilterPolicy, mask: np.ndarray, m: int):
        self._search = search
        self._max_k = policy.postfilter_max_k
        self._mask = mask
        self._m = m
        self._selector: _Selector | None = None

    def __call__(self, q: np.ndarray, k: int):
        search, ctx = self._search, self._search.context
        # A compressed index re-ranks its candidate count of admissible ones.
        want = rerank_count(ctx.config, k) if ctx.compressed else k
        raw = min(ctx.size, math.ceil(want * ctx.size / self._m * 1.5) + 32)
        if raw > self._max_k:
            return self._fallback()(q, k)
        dist, pos = search.approximate(q, raw)
        ok = (pos >= 0) & self._mask[np.maximum(pos, 0)]
        pos = np.where(ok, pos, -1)
        dist, pos = search.refine(q, dist, pos, k)
        count = (pos >= 0).sum(axis=1)
        exhausted = np.zeros(len(q), dtype=bool)
        if raw >= ctx.size and not ctx.nlist:
            exhausted[:] = count < k  # an exact scan of everything: nothing more to find
        else:
            short = np.flatnonzero(count < min(k, self._m))
            if short.size:
                d2, p2, e2 = self._fallback()(q[short], k)
                dist[short], pos[short], exhausted[short] = d2, p2, e2
        return dist, pos, exhausted

    def _fallback(self) -> _Selector:
        if self._selector is None:
            self._selector = _Selector(self._search, self._mask, self._m)
        return self._selector
