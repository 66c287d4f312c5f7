"""Distance measures: FAISS metric per measure, normalization, conversion of
FAISS scores to explaind distances (smaller is nearer for every measure), and
an exact numpy search over a subset of vectors (selective filters)."""
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


def from_faiss(scores: np.ndarray, config: SearchConfig) -> np.ndarray:
    """FAISS scores -> distances. Missing results (-1 ids) must be masked by the caller."""
    if config.distance == "DOT_PRODUCT_DISTANCE":
        return 0.0 - scores          # not -scores: a zero product would read "-0"
    if config.distance == "COSINE_DISTANCE":
        return 1.0 - scores
    return scores


def exact_distances(queries: np.ndarray, vectors: np.ndarray, config: SearchConfig) -> np.ndarray:
    """(q, m) distances between prepared queries and prepared vectors."""
    d = config.distance
    if d in ("DOT_PRODUCT_DISTANCE", "COSINE_DISTANCE"):
        ip = queries @ vectors.T
        return 0.0 - ip if d == "DOT_PRODUCT_DISTANCE" else 1.0 - ip
    if d == "SQUARED_L2_DISTANCE":
        out = queries @ vectors.T
        out *= -2.0
        out += np.einsum("ij,ij->i", queries, queries)[:, None]
        out += np.einsum("ij,ij->i", vectors, vectors)[None, :]
        return np.maximum(out, 0.0, out=out)
    # L1: no matrix form; broadcast in blocks of about 8M floats (32 MB).
    q, m, dim = len(queries), len(vectors), queries.shape[1]
    out = np.empty((q, m), dtype=np.float32)
    budget = L1_BLOCK
    rows = max(1, budget // max(1, m * dim))
    cols = m if rows > 1 else max(1, budget // dim)
    for s in range(0, q, rows):
        for c in range(0, m, cols):
            block = queries[s:s + rows, None, :] - vectors[None, c:c + cols, :]
            out[s:s + rows, c:c + cols] = np.abs(block, out=block).sum(-1)
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
