"""Recall@k of a compressed index, measured as a user meets it.

Held-out examples are the queries: a sample of the index's own examples, each
searched with itself left out of both answers (its k nearest *other* examples
by exact search are the truth; its own position is dropped from the
candidates the codes return, as a query from outside the index would not
find itself). The search is the served one: candidates by code (the fast-scan
lists, backend.search_by_list, in the codes' space), re-ranked exactly
against the full vectors (Vectors.exact). One search per leaves-searched
value gives the recall of every candidate count at once: the best r
candidates by code are the first r of the best R.

The exact truth reads every vector once, in blocks (a mapped segment block by
block, its pages given back), so it costs N x queries x d multiply-adds; the
sample is sized to keep that bounded (`query_count`).
"""
from __future__ import annotations

import dataclasses

import faiss
import numpy as np

from explaind.server.index import distances
from explaind.server.index.backend import search_by_list
from explaind.server.index.code_space import CodeSpace
from explaind.server.index.config import SearchConfig
from explaind.server.index.vectors import Vectors

SAMPLE_SEED = 4321
# Held-out queries per measurement (a tuning half and a reporting half each):
# the standard error of recall@10 0.95 over 500 queries is about 0.003.
MAX_QUERIES = 500
MIN_QUERIES = 200
# Multiply-adds the exact truth may cost before the sample shrinks toward MIN_QUERIES.
TRUTH_BUDGET = 2.5e11
# Queries re-ranked at a time, their mapped pages given back after each batch: a
# candidate row faults in a 4 KB page (up to 32 x 1000 of them, 128 MB, at once).
RERANK_QUERIES = 32


def query_count(live: int, d: int) -> int:
    """Held-out queries for one measurement over `live` examples of d dimensions."""
    by_budget = int(TRUTH_BUDGET / max(1, 2 * live * d))
    return max(1, min(live // 10, MAX_QUERIES, max(MIN_QUERIES, by_budget)))


def sample_positions(live_positions: np.ndarray, count: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """`count` distinct live positions, drawn with a fixed seed (sorted)."""
    count = min(count, len(live_positions))
    pick = np.random.default_rng(seed).choice(len(live_positions), count, replace=False)
    return np.sort(live_positions[pick])


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Examples used as queries, and each one's k nearest other examples."""
    positions: np.ndarray       # (q,)
    queries: np.ndarray         # (q, d) prepared
    truth: np.ndarray           # (q, k) positions, nearest first

    def __len__(self) -> int:
        return len(self.positions)

    def part(self, rows: slice) -> "HeldOut":
        return HeldOut(self.positions[rows], self.queries[rows], self.truth[rows])


def held_out(vectors: Vectors, config: SearchConfig, positions: np.ndarray, k: int,
             live: np.ndarray | None = None) -> HeldOut:
    """The exact k nearest other live examples of each example at `positions`
    (FAISS's exhaustive k-NN over each block of the vectors, merged)."""
    positions = np.asarray(positions, dtype=np.int64)
    queries = np.ascontiguousarray(vectors.prepared(positions), dtype=np.float32)
    metric = distances.faiss_metric(config)
    sign = -1.0 if metric == faiss.METRIC_INNER_PRODUCT else 1.0        # smaller is nearer, as FAISS's L2 and L1
    want = k + 1                                    # itself, then k others
    best_d = np.full((len(queries), want), np.inf, np.float32)
    best_p = np.full((len(queries), want), -1, np.int64)
    for block_positions, block in vectors.prepared_blocks():
        block = np.ascontiguousarray(block, dtype=np.float32)
        if live is not None:
            keep = live[block_positions]
            block, block_positions = np.ascontiguousarray(block[keep]), block_positions[keep]
        if not len(block):
            continue
        found_d, found_i = faiss.knn(queries, block, min(want, len(block)), metric=metric)
        found_d = np.where(found_i >= 0, sign * found_d, np.inf).astype(np.float32)
        all_d = np.concatenate([best_d, found_d], axis=1)
        all_p = np.concatenate([best_p, np.where(found_i >= 0, block_positions[np.maximum(found_i, 0)], -1)], axis=1)
        best_d, cols = distances.top_k(all_d, want)
        best_p = np.take_along_axis(all_p, cols, axis=1)
    return HeldOut(positions, queries, _without(best_p, positions, k))


def _without(found: np.ndarray, own: np.ndarray, width: int) -> np.ndarray:
    """Each row of `found` less its own position (order kept), cut or padded (-1) to `width`."""
    keep = found != own[:, None]
    # stable: kept entries first, in their order
    order = np.argsort(~keep, axis=1, kind="stable")
    out = np.take_along_axis(np.where(keep, found, -1), order, axis=1)[:, :width]
    if out.shape[1] < width:
        out = np.concatenate([out, np.full((len(out), width - out.shape[1]), -1, out.dtype)], axis=1)
    return out


def recall_of(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |found ∩ truth| / k (truth's -1 padding never matches)."""
    k = truth.shape[1]
    hits = (found[:, :, None] == truth[:, None, :]) & (truth[:, None, :] >= 0)
    return float(hits.any(axis=2).sum(axis=1).mean() / k)


class Probe:
    """A compressed index as the measurement searches it: its fast-scan lists,
    the space its codes live in, and the full vectors that re-rank."""

    def __init__(self, search_index: faiss.IndexIVFFastScan, space: CodeSpace, vectors: Vectors,
                 config: SearchConfig):
        self.index = search_index
        self.space = space
        self.vectors = vectors
        self.config = config
        self.nlist = int(search_index.nlist)
        self._sizes = np.array([search_index.invlists.list_size(i) for i in range(self.nlist)], np.int64)

    def candidates(self, queries: np.ndarray, nprobe: int, count: int) -> np.ndarray:
        """Positions of each query's `count` best candidates by code, best first (-1: none)."""
        params = faiss.SearchParametersIVF(nprobe=int(min(nprobe, self.nlist)))
        count = int(min(count, self.index.ntotal))
        _, pos = search_by_list(self.index, self.space.apply(queries), count, params)
        return pos

    def scanned(self, queries: np.ndarray, nprobe: int) -> float:
        """Codes a query scans with `nprobe` lists, on average over these queries."""
        _, lists = self.index.quantizer.search(self.space.apply(queries), int(min(nprobe, self.nlist)))
        return float(self._sizes[np.maximum(lists, 0)].sum(axis=1).mean())


class RecallCurve:
    """Recall@k at one number of lists searched, for any candidate count up to
    `most` (one search: the best r candidates by code are the first r of the best `most`)."""

    def __init__(self, probe: Probe, held: HeldOut, nprobe: int, most: int, k: int):
        self._cand = _without(probe.candidates(held.queries, nprobe, most + 1), held.positions, most)
        self._exact = np.empty(self._cand.shape, np.float32)
        for s in range(0, len(self._cand), RERANK_QUERIES):
            self._exact[s:s + RERANK_QUERIES] = probe.vectors.exact(held.queries[s:s + RERANK_QUERIES],
                                                                    self._cand[s:s + RERANK_QUERIES])
            probe.vectors.give_back_pages()
        self._truth = held.truth
        self._k = k

    def at(self, count: int) -> float:
        dist, cols = distances.top_k(self._exact[:, :count], self._k)
        found = np.where(np.isfinite(dist), np.take_along_axis(self._cand[:, :count], cols, axis=1), -1)
        return recall_of(found, self._truth)


def recall_by_count(probe: Probe, held: HeldOut, nprobe: int, counts: list[int], k: int) -> np.ndarray:
    """Recall@k at `nprobe` lists for each candidate count (one search)."""
    curve = RecallCurve(probe, held, nprobe, max(counts), k)
    return np.array([curve.at(c) for c in counts])
