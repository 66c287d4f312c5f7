"""Distance measures, the one place their formulas live: the FAISS metric of
each measure, normalization, FAISS scores turned into explaind distances
(smaller is nearer for every measure), and exact numpy distances (selective
filters, re-ranks, single-query scans, exhaustive crowded passes).

Every measure but L1 is a function of inner products (`from_inner_products`);
L1 is the sum of absolute differences (`_l1`). Whoever has inner products or
vectors in another shape (FAISS scores, a memory-mapped re-rank) comes here
for the formula."""
from __future__ import annotations

import faiss
import numpy as np

from explaind.server.index.config import SearchConfig

# COSINE and DOT use FAISS inner product (larger is nearer) and are negated.
_METRIC = {
    "DOT_PRODUCT_DISTANCE": faiss.METRIC_INNER_PRODUCT,
    "COSINE_DISTANCE": faiss.METRIC_INNER_PRODUCT,
    "SQUARED_L2_DISTANCE": faiss.METRIC_L2,
    "L1_DISTANCE": faiss.METRIC_L1,
}


L1_BLOCK = 8 << 20  # floats per broadcast block of the numpy L1 distance


def faiss_metric(config: SearchConfig) -> int:
    return _METRIC[config.distance]


def normalizes(config: SearchConfig) -> bool:
    """Cosine is inner product over unit vectors; UNIT_L2_NORM asks for it too."""
    return config.distance == "COSINE_DISTANCE" or config.feature_norm == "UNIT_L2_NORM"


def prepare(x: np.ndarray, config: SearchConfig) -> np.ndarray:
    """Vectors as the index sees them: contiguous float32, unit norm if asked.
    Zero vectors stay zero (their cosine to anything is 0)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if normalizes(config):
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, np.float32(1e-30))
        x = np.ascontiguousarray(x, dtype=np.float32)
    return x


def squared_norms(x: np.ndarray) -> np.ndarray:
    """|x|^2 of each vector (the last axis)."""
    return np.einsum("...d,...d->...", x, x)


def from_inner_products(ip: np.ndarray, config: SearchConfig, queries: np.ndarray | None = None,
                        x_squared: np.ndarray | None = None) -> np.ndarray:
    """Distances from inner products <q, x> of prepared vectors, row i of `ip`
    for query i; `ip` is overwritten. SQUARED_L2 also needs the queries and
    the squared norms of the x (broadcastable to `ip`). L1 has no such form."""
    measure = config.distance
    if measure == "DOT_PRODUCT_DISTANCE":
        return np.subtract(0.0, ip, out=ip)     # not -ip: a zero product would read "-0"
    if measure == "COSINE_DISTANCE":
        return np.subtract(1.0, ip, out=ip)
    if measure == "SQUARED_L2_DISTANCE":        # |q|^2 + |x|^2 - 2<q, x>, kept >= 0 against rounding
        ip *= -2.0
        ip += squared_norms(queries)[:, None]
        ip += x_squared
        return np.maximum(ip, 0.0, out=ip)
    raise ValueError(f"{measure} is not a function of inner products")


def from_faiss(scores: np.ndarray, config: SearchConfig) -> np.ndarray:
    """FAISS scores -> distances (`scores` may be overwritten): inner products go
    through the measure's formula; L2 and L1 scores already are distances.
    Missing results (-1 ids) must be masked by the caller."""
    if faiss_metric(config) == faiss.METRIC_INNER_PRODUCT:
        return from_inner_products(scores, config)
    return scores


def exact_distances(queries: np.ndarray, vectors: np.ndarray, config: SearchConfig,
                    vectors_squared: np.ndarray | None = None) -> np.ndarray:
    """(q, m) distances between prepared queries and prepared vectors;
    `vectors_squared`: their squared norms when the caller keeps them."""
    if config.distance == "L1_DISTANCE":
        return _l1_matrix(queries, vectors)
    ip = queries @ vectors.T
    if config.distance == "SQUARED_L2_DISTANCE" and vectors_squared is None:
        vectors_squared = squared_norms(vectors)
    return from_inner_products(ip, config, queries, None if vectors_squared is None else vectors_squared[None, :])


def pair_distances(queries: np.ndarray, rows: np.ndarray, config: SearchConfig) -> np.ndarray:
    """(r, c) distances between queries (r, d) and each query's own rows (r, c, d), both prepared."""
    if config.distance == "L1_DISTANCE":
        return _l1(rows, queries[:, None, :])
    ip = np.einsum("rcd,rd->rc", rows, queries)
    return from_inner_products(ip, config, queries, squared_norms(rows))


def _l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = a - b
    return np.abs(diff, out=diff).sum(-1)


def _l1_matrix(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """L1 has no matrix form: broadcast in blocks of about L1_BLOCK floats (32 MB)."""
    q, m, dim = len(queries), len(vectors), queries.shape[1]
    out = np.empty((q, m), dtype=np.float32)
    rows = max(1, L1_BLOCK // max(1, m * dim))
    cols = m if rows > 1 else max(1, L1_BLOCK // dim)
    for s in range(0, q, rows):
        for c in range(0, m, cols):
            out[s:s + rows, c:c + cols] = _l1(queries[s:s + rows, None, :], vectors[None, c:c + cols, :])
    return out


def top_k(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise k smallest, sorted: (distances, column indices)."""
    m = dist.shape[1]
    k = min(k, m)
    if k < m:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), dist.shape).copy()
    d = np.take_along_axis(dist, part, axis=1)
    order = np.argsort(d, axis=1, kind="stable")
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(part, order, axis=1)
