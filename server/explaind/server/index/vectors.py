"""Where an index's full vectors live, and exact distances against them.

- `HeldVectors`: in RAM, as FAISS's own flat storage (exact indexes, and IVF-Flat
  indexes of format 1). `prepared` is what the index searches (normalized where
  the measure asks), `originals` what was uploaded (the same array unless the
  measure normalizes).
- `MappedVectors`: the uploaded embeddings in .npy segment files, memory-mapped,
  for compressed indexes. The page cache holds what searches touch; host memory
  holds only each row's norm (normalizing measures). Segments are immutable: an
  update adds one, and a removal only hides rows (the index's live mask), so
  an update never rewrites the vectors of the examples it keeps.
"""
from __future__ import annotations

import os

import faiss
import numpy as np

from explaind.server.index import distances
from explaind.server.index.config import SearchConfig

# rows gathered at once by scans over many positions (~32 MB at d = 128)
SCAN_ROWS = 1 << 16


class Vectors:
    """The common interface: rows by position and exact distances to them."""
    config: SearchConfig
    size: int
    dimensions: int

    def originals(self, positions: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def prepared(self, positions: np.ndarray) -> np.ndarray:
        """Rows as the index compares them (unit norm where the measure asks)."""
        return distances.prepare(self.originals(positions), self.config)

    def exact(self, q: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Exact distances (r, c) between prepared queries q (r, d) and the rows
        positions (r, c) (entries < 0 give inf)."""
        valid = positions >= 0
        rows = self.prepared(np.where(valid, positions, 0).ravel()).reshape(*positions.shape, self.dimensions)
        out = distances.pair_distances(q, rows, self.config)
        out[~valid] = np.inf
        return out

    @property
    def ram_bytes(self) -> int:
        return 0

    @property
    def mapped_bytes(self) -> int:
        return 0


class HeldVectors(Vectors):
    def __init__(self, prepared: np.ndarray, originals: np.ndarray, config: SearchConfig):
        self.matrix = prepared
        self._originals = originals
        self.config = config
        self.size, self.dimensions = int(prepared.shape[0]), int(prepared.shape[1])
        self._squared_norms: np.ndarray | None = None     # of the rows, for squared L2; computed once

    def distances_to_all(self, q: np.ndarray) -> np.ndarray:
        """(len(q), size) exact distances from prepared queries to every row."""
        if self.config.distance == "SQUARED_L2_DISTANCE" and self._squared_norms is None:
            self._squared_norms = distances.squared_norms(self.matrix)
        return distances.exact_distances(q, self.matrix, self.config, self._squared_norms)

    @property
    def original_matrix(self) -> np.ndarray:
        return self._originals

    @property
    def originals_are_prepared(self) -> bool:
        """The measure does not normalize: one matrix serves both."""
        return self._originals is self.matrix

    def originals(self, positions):
        return self._originals[np.asarray(positions, dtype=np.int64)]

    def prepared(self, positions):
        return self.matrix[np.asarray(positions, dtype=np.int64)]


class MappedVectors(Vectors):
    def __init__(self, segments: list[np.ndarray | None], norms: np.ndarray | None, config: SearchConfig,
                 dimensions: int, rows: list[int] | None = None):
        """segments: (rows_i, d) float32 arrays in position order, usually
        np.memmap; None for a segment not present here (an update reads only
        the codes of its base). norms: each row's L2 norm, for normalizing
        measures (None otherwise)."""
        self.segments = segments
        self.config = config
        self.dimensions = int(dimensions)
        counts = rows if rows is not None else [len(s) for s in segments]
        self.starts = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.starts[1:])
        self.size = int(self.starts[-1])
        self.norms = norms
        self._normalizes = distances.normalizes(config)
        if self._normalizes and (norms is None or len(norms) != self.size):
            raise ValueError("a normalizing measure needs every row's norm")

    @classmethod
    def open(cls, folder: str, names: list[str], rows: list[int], norms, config, dimensions) -> "MappedVectors":
        segments = []
        for name, count in zip(names, rows):
            path = segment_path(folder, name)
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if array.dtype != np.float32 or array.shape != (count, dimensions) or not array.flags.c_contiguous:
                raise ValueError(f"{path}: expected a C-ordered float32 ({count}, {dimensions}) matrix, "
                                 f"found {array.dtype} {array.shape}")
            segments.append(array)
        return cls(segments, norms, config, dimensions, rows)

    def with_segment(self, array: np.ndarray, norms: np.ndarray | None) -> "MappedVectors":
        """These rows followed by `array` (a new segment), norms extended."""
        joined = None if norms is None else np.concatenate([self.norms, norms])
        counts = list(np.diff(self.starts)) + [len(array)]
        return MappedVectors(self.segments + [array], joined, self.config, self.dimensions, counts)

    def _split(self, positions: np.ndarray):
        """(segment index, rows in it, where in `positions`) per segment touched."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(self.segments) == 1:
            yield 0, positions, slice(None)
            return
        seg = np.searchsorted(self.starts, positions, side="right") - 1
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            yield int(s), positions[where] - self.starts[s], where

    def _segment(self, s: int) -> np.ndarray:
        array = self.segments[s]
        if array is None:
            raise RuntimeError("the vectors of this index are not present here")
        return array

    def originals(self, positions):
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((len(positions), self.dimensions), dtype=np.float32)
        for s, rows, where in self._split(positions):
            out[where] = self._segment(s)[rows]
        return out

    def prepared(self, positions):
        rows = self.originals(positions)
        if self._normalizes:
            rows /= np.maximum(self.norms[np.asarray(positions, dtype=np.int64)], np.float32(1e-30))[:, None]
        return rows

    def exact(self, q, positions):
        """FAISS's by-index kernels (one query against its own candidates, in
        parallel over queries) read the candidate rows straight from the map, one
        call per segment touched (the other segments' candidates masked as -1)."""
        metric = distances.faiss_metric(self.config)
        if metric == faiss.METRIC_L1:
            return super().exact(q, positions)
        r, c = positions.shape
        squared = metric == faiss.METRIC_L2 and not self._normalizes
        kernel = faiss.fvec_L2sqr_by_idx if squared else faiss.fvec_inner_products_by_idx
        q = np.ascontiguousarray(q, dtype=np.float32)
        positions = np.ascontiguousarray(positions, dtype=np.int64)
        out = np.full((r, c), np.nan, dtype=np.float32)
        if len(self.segments) == 1:
            kernel(faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(self._segment(0)),
                   faiss.swig_ptr(positions), self.dimensions, r, c)
        else:
            seg = np.searchsorted(self.starts, positions, side="right") - 1
            part = np.empty((r, c), dtype=np.float32)
            for s in np.unique(seg[positions >= 0]):
                local = np.where((seg == s) & (positions >= 0), positions - self.starts[s], -1)
                kernel(faiss.swig_ptr(part), faiss.swig_ptr(q), faiss.swig_ptr(self._segment(int(s))),
                       faiss.swig_ptr(local), self.dimensions, r, c)
                np.copyto(out, part, where=local >= 0)
        valid = positions >= 0
        if not squared:
            out = self._from_inner_products(q, positions, out)
        out[~valid] = np.inf
        return out

    def _from_inner_products(self, q, positions, ip):
        """(r, c) distances from <q, x> with x the original rows at `positions` (q prepared)."""
        x_squared = None
        if self._normalizes:          # the rows as prepared: divided by their norms
            norms = self.norms[np.maximum(positions, 0)]
            scale = 1.0 / np.maximum(norms, np.float32(1e-30))
            ip = ip * scale
            x_squared = np.square(norms * scale)       # 1, or 0 for a zero vector (it stays zero)
        return distances.from_inner_products(ip, self.config, q, x_squared).astype(np.float32, copy=False)

    @property
    def ram_bytes(self) -> int:
        return 0 if self.norms is None else int(self.norms.nbytes)

    @property
    def mapped_bytes(self) -> int:
        return int(self.size) * self.dimensions * 4


def segment_path(folder: str, name: str) -> str:
    return os.path.join(folder, f"{name}.npy")


def row_norms(x: np.ndarray) -> np.ndarray:
    """float32 L2 norm of each row, computed in blocks (x may be memory-mapped)."""
    out = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), SCAN_ROWS):
        block = np.asarray(x[s:s + SCAN_ROWS], dtype=np.float32)
        out[s:s + len(block)] = np.linalg.norm(block, axis=1)
    return out
