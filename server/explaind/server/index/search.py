"""A batch of queries searched: checked, grouped by restricts (rows with
identical restricts share one FAISS call), each group's candidates fetched by
the filtering strategy its selectivity gets (filtering.py), and crowding
applied: over-fetching, or one exact pass over every admissible example where
a few tags crowd out everything or the call asks for all of them.

Errors name no request field: callers attach the field (errors.attach_fields)."""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, NamedTuple, Sequence

import numpy as np

from explaind.server.errors import DimensionMismatch, InvalidArgument
from explaind.server.index import distances
from explaind.server.index.contents import IndexContents
from explaind.server.index.crowding import crowded_top_k, keep_mask
from explaind.server.index.faiss_search import FaissSearch, SearchContext
from explaind.server.index.filtering import FilterStrategies
from explaind.server.index.restricts import Namespace
from explaind.server.index.search_params import SearchParams
from explaind.server.index.vectors import SCAN_ROWS, HeldVectors

# distances one exhaustive crowded pass holds at once (64 MB of float32)
EXHAUSTIVE_FLOATS = 16 << 20

Restricts = Sequence[Sequence[Namespace] | None]
OnViolation = Callable[[int], None]


class Neighbor(NamedTuple):
    id: str             # the example's id
    distance: float     # smaller is nearer, for every measure
    position: int       # the example's row in the index


def search_arrays(contents: IndexContents, context: SearchContext, queries: np.ndarray, neighbor_count: int,
                  restricts: Restricts | None, crowding_count: int, on_violation: OnViolation | None,
                  params: SearchParams) -> tuple[np.ndarray, np.ndarray]:
    """(positions int64, distances float32), each (queries, neighbor_count),
    nearest first, -1 / inf past the neighbors found. `context`: the index's
    own, which `params` may turn."""
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != contents.dimensions:
        raise DimensionMismatch(f"query embeddings must have {contents.dimensions} dimensions, got shape {q.shape}")
    if not np.isfinite(q).all():
        raise InvalidArgument("query embedding has non-finite values")
    if restricts is not None and len(restricts) != len(q):
        raise ValueError(f"{len(restricts)} restricts for {len(q)} queries")
    if neighbor_count < 0 or crowding_count < 0:
        raise ValueError("neighbor_count and crowding_count must be >= 0")
    k = int(neighbor_count)
    out_pos = np.full((len(q), k), -1, dtype=np.int64)
    out_dist = np.full((len(q), k), np.inf, dtype=np.float32)
    if k == 0 or contents.live_count == 0 or len(q) == 0:
        return out_pos, out_dist
    q = distances.prepare(q, contents.config)
    group = _Group(contents, FilterStrategies(FaissSearch(params.applied_to(context)), params.filter_policy),
                   k, crowding_count, on_violation)
    for query, rows in _by_restricts(restricts, len(q)).items():
        mask = contents.postings.admissible(query)
        if mask is not None and contents.live is not None:
            mask &= contents.live
        if len(rows) == len(q):
            group.search(q, mask, out_pos, out_dist)
        else:
            pos, dist = out_pos[rows], out_dist[rows]
            group.search(q[rows], mask, pos, dist)
            out_pos[rows], out_dist[rows] = pos, dist
    return out_pos, out_dist


def neighbor_lists(contents: IndexContents, pos: np.ndarray, dist: np.ndarray) -> list[list[Neighbor]]:
    """search_arrays' answer as Neighbors, each row cut at the neighbors found."""
    counts = (pos >= 0).sum(axis=1).tolist()
    make = tuple.__new__            # Neighbor(...) without its Python-level __new__: answers build many
    out = []
    for positions, dists, n in zip(pos.tolist(), dist.tolist(), counts):
        positions, dists = positions[:n], dists[:n]
        out.append([make(Neighbor, (i, d, p)) for i, d, p in zip(contents.ids.many(positions), dists, positions)])
    return out


def _by_restricts(restricts: Restricts | None, rows: int) -> dict[tuple[Namespace, ...], list[int]]:
    groups: dict[tuple[Namespace, ...], list[int]] = defaultdict(list)
    if restricts is None:
        groups[()] = list(range(rows))
    else:
        for row in range(rows):
            groups[_query_key(restricts[row])].append(row)
    return groups


def _found_first(pos: np.ndarray) -> bool:
    """Every row's neighbors found (>= 0) come before its empty slots (-1)."""
    found = pos >= 0
    return bool((found[:, 1:] <= found[:, :-1]).all())


def _query_key(query: Sequence[Namespace] | None) -> tuple[Namespace, ...]:
    """Hashable form of a query (tokens given as lists become tuples)."""
    return tuple(Namespace(ns.name, tuple(ns.allow), tuple(ns.deny)) for ns in query or ())


class _Group:
    """Rows that share one admissible mask, searched with crowding."""

    def __init__(self, contents: IndexContents, strategies: FilterStrategies, k: int, crowding: int,
                 on_violation: OnViolation | None):
        self._contents = contents
        self._strategies = strategies
        self._k = k
        self._crowding = crowding
        self._on_violation = on_violation

    def search(self, q: np.ndarray, mask: np.ndarray | None, out_pos: np.ndarray, out_dist: np.ndarray) -> None:
        """Fills out_pos / out_dist (len(q), k) with each row's neighbors."""
        k, crowding, tags = self._k, self._crowding, self._contents.tag_codes
        fetch = self._strategies.choose(mask, self._on_violation)
        admissible = fetch.admissible
        if admissible == 0:
            return
        # Crowding drops candidates: over-fetch, then double k for the rows
        # still short until they are full or every admissible example was seen;
        # past the policy's crowding_max_fetch (a few tags crowd out everything)
        # one exact pass over all admissible examples is cheaper than a huge k.
        k_fetch = min(admissible, k if crowding == 0 else 2 * k)
        pending = np.arange(len(q))
        while pending.size:
            # Asked for every admissible example: the exact pass costs what the answer
            # holds, and FAISS's fast-scan codes can drop the farthest one (its
            # saturated inner-product score loses to the empty slot it should fill).
            if k_fetch >= admissible or crowding and k_fetch > self._strategies.policy.crowding_max_fetch:
                for row, (d, p) in zip(pending, self._exhaustive(q[pending], mask)):
                    out_pos[row, :len(p)], out_dist[row, :len(p)] = p, d
                break
            dist, pos, exhausted = fetch(q if pending.size == len(q) else q[pending], k_fetch)
            if not crowding and pos.shape[1] <= k and _found_first(pos):
                # Nothing to drop: each row is its own answer (the moves below cost
                # ~0.4 us a query, 3% of a one-list compressed search).
                found = (pos >= 0).sum(axis=1)
                done = (found >= k) | exhausted
                rows = pending[done]
                out_pos[rows, :pos.shape[1]] = pos[done]
                out_dist[rows, :pos.shape[1]] = np.where(pos[done] >= 0, dist[done], np.inf)
                pending = pending[~done]
                k_fetch = min(admissible, 2 * k_fetch)
                continue
            keep = keep_mask(pos, tags, crowding, k)
            done = (keep.sum(axis=1) >= k) | exhausted
            rows = np.flatnonzero(done)
            # Each row's kept candidates (at most k, in order) moved to its front.
            order = np.argsort(~keep[rows], axis=1, kind="stable")[:, :k]
            kept = np.take_along_axis(keep[rows], order, axis=1)
            width = kept.shape[1]
            out_pos[pending[rows], :width] = np.where(kept, np.take_along_axis(pos[rows], order, axis=1), -1)
            out_dist[pending[rows], :width] = np.where(kept, np.take_along_axis(dist[rows], order, axis=1), np.inf)
            pending = pending[~done]
            k_fetch = min(admissible, 2 * k_fetch)

    def _exhaustive(self, q: np.ndarray, mask: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query row: (distances, positions) of its exact crowded neighbors."""
        c = self._contents
        if mask is None:
            mask = c.live
        positions = np.arange(c.size) if mask is None else np.flatnonzero(mask)
        whole = isinstance(c.vectors, HeldVectors) and mask is None
        # Memory stays bounded: a few queries at a time against every admissible
        # vector, the vectors read in blocks (a mapped index is read in order).
        group = max(1, EXHAUSTIVE_FLOATS // max(1, len(positions)))
        out = []
        for g in range(0, len(q), group):
            rows = q[g:g + group]
            if whole:
                dist = c.vectors.distances_to_all(rows)
            else:
                dist = np.empty((len(rows), len(positions)), dtype=np.float32)
                for s in range(0, len(positions), SCAN_ROWS):
                    block = c.vectors.prepared(positions[s:s + SCAN_ROWS])
                    dist[:, s:s + SCAN_ROWS] = distances.exact_distances(rows, block, c.config)
            out.extend(crowded_top_k(row, positions, c.tag_codes, self._crowding, self._k) for row in dist)
        return out
