"""Where an index's full vectors live, and exact distances against them.

- `HeldVectors`: in RAM, as FAISS's own flat storage (exact indexes, and IVF-Flat
  indexes of format 1). `prepared` is what the index searches (normalized where
  the measure asks), `originals` what was uploaded (the same array unless the
  measure normalizes).
- `MappedVectors`: the uploaded embeddings in .npy segment files, memory-mapped,
  for compressed indexes. The page cache holds what searches touch; host memory
  holds only each row's norm (normalizing measures). Segments are immutable: an
  update adds one, and a removal only hides rows (the index's live mask), so
  an update never rewrites the vectors of the examples it keeps. How a segment
  is laid out and read from disk: segments.py. A re-rank (`exact`) reads its
  candidates' rows through the mapping, or with O_DIRECT where the index was
  opened with reads=DIRECT (row_reads.py); other reads (scans, filtered
  subsets, embeddings_of) always go through the mapping.
"""
from __future__ import annotations

import os
from typing import Iterator

import faiss
import numpy as np

from explaind.server.index import distances, row_reads
from explaind.server.index import segments as segment_files
from explaind.server.index.config import SearchConfig
from explaind.server.index.segments import SCAN_ROWS

__all__ = ["SCAN_ROWS", "HeldVectors", "MappedVectors", "Vectors", "row_norms", "segment_path"]


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

    def prepared_blocks(self, rows: int = SCAN_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions, their prepared rows) in blocks, every position once."""
        for s in range(0, self.size, rows):
            positions = np.arange(s, min(self.size, s + rows))
            yield positions, self.prepared(positions)

    def give_back_pages(self) -> None:
        """Mapped pages this process touched are given back (nothing to do for held vectors)."""

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

    def prepared_blocks(self, rows: int = SCAN_ROWS):
        for s in range(0, self.size, rows):
            yield np.arange(s, min(self.size, s + rows)), self.matrix[s:s + rows]


class MappedVectors(Vectors):
    def __init__(self, segments: list[np.ndarray | None], norms: np.ndarray | None, config: SearchConfig,
                 dimensions: int, rows: list[int] | None = None, segment_rows: np.ndarray | None = None,
                 reads: str = row_reads.MAPPED):
        """segments: (rows_i, d) float32 arrays, usually np.memmap; None for a
        segment not present here (an update that only appends reads none of
        its base's). norms: each position's L2 norm, for normalizing measures
        (None otherwise). segment_rows: the row of each position within its
        segment (segments are written in list order, codes.py); None: the
        segments are in position order. reads: how a re-rank reads its rows
        (row_reads.MAPPED or DIRECT)."""
        self.segments = segments
        self.config = config
        self.dimensions = int(dimensions)
        counts = rows if rows is not None else [len(s) for s in segments]
        self.starts = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.starts[1:])
        self.size = int(self.starts[-1])
        self.norms = norms
        self.segment_rows = segment_rows
        self._normalizes = distances.normalizes(config)
        if self._normalizes and (norms is None or len(norms) != self.size):
            raise ValueError("a normalizing measure needs every row's norm")
        if segment_rows is not None and len(segment_rows) != self.size:
            raise ValueError("segment_rows needs one row a position")
        if reads not in (row_reads.MAPPED, row_reads.DIRECT):
            raise ValueError(f"reads must be {row_reads.MAPPED} or {row_reads.DIRECT}, got {reads!r}")
        # Direct: a reader (an O_DIRECT descriptor) per segment, opened now; mapped: the kernels read the map.
        self._readers = None if reads == row_reads.MAPPED else \
            [None if a is None else row_reads.reader(a, reads) for a in segments]

    @property
    def reads(self) -> str:
        """How re-ranks read rows: DIRECT where at least one segment is read with O_DIRECT."""
        direct = self._readers is not None and any(r is not None and r.mode == row_reads.DIRECT
                                                   for r in self._readers)
        return row_reads.DIRECT if direct else row_reads.MAPPED

    @classmethod
    def open(cls, folder: str, names: list[str], rows: list[int], norms, config, dimensions,
             segment_rows: np.ndarray | None = None, reads: str = row_reads.MAPPED) -> "MappedVectors":
        opened = []
        for name, count in zip(names, rows):
            path = segment_path(folder, name)
            array = segment_files.open_segment(path)
            if array.dtype != np.float32 or array.shape != (count, dimensions) or not array.flags.c_contiguous:
                raise ValueError(f"{path}: expected a C-ordered float32 ({count}, {dimensions}) matrix, "
                                 f"found {array.dtype} {array.shape}")
            opened.append(array)
        return cls(opened, norms, config, dimensions, rows, segment_rows, reads)

    def with_segment(self, array: np.ndarray, norms: np.ndarray | None,
                     segment_rows: np.ndarray | None = None) -> "MappedVectors":
        """These positions followed by those of `array` (a new segment; its row of
        each new position: `segment_rows`, None for in order), norms extended."""
        joined = None if norms is None else np.concatenate([self.norms, norms])
        counts = list(np.diff(self.starts)) + [len(array)]
        rows = None
        if self.segment_rows is not None or segment_rows is not None:
            rows = np.concatenate([self._rows_or_order(), np.arange(len(array)) if segment_rows is None
                                   else segment_rows]).astype(_row_type(max(counts, default=0)))
        reads = row_reads.MAPPED if self._readers is None else row_reads.DIRECT
        return MappedVectors(self.segments + [array], joined, self.config, self.dimensions, counts, rows, reads)

    def _rows_or_order(self) -> np.ndarray:
        """The segment row of every position (in order where there is no map)."""
        if self.segment_rows is not None:
            return self.segment_rows
        return np.concatenate([np.arange(int(n)) for n in np.diff(self.starts)]) if self.size \
            else np.zeros(0, np.int64)

    def _local(self, positions: np.ndarray, segment: int) -> np.ndarray:
        """Rows within `segment` of positions in it (-1 stays -1)."""
        if self.segment_rows is not None:
            return np.where(positions >= 0, self.segment_rows[np.maximum(positions, 0)], -1).astype(np.int64)
        return np.where(positions >= 0, positions - self.starts[segment], -1)

    def _split(self, positions: np.ndarray):
        """(segment index, rows in it, where in `positions`) per segment touched."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(self.segments) == 1:
            yield 0, self._local(positions, 0), slice(None)
            return
        seg = np.searchsorted(self.starts, positions, side="right") - 1
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            yield int(s), self._local(positions[where], int(s)), where

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

    def prepared_blocks(self, rows: int = SCAN_ROWS):
        """Each segment read in file order, in blocks whose mapped pages are
        given back (segment_files.blocks); a block's positions are those of its rows."""
        for s in range(len(self.segments)):
            start, count = int(self.starts[s]), int(self.starts[s + 1] - self.starts[s])
            position_of_row = None
            if self.segment_rows is not None:      # 4 bytes a row where positions fit (a build holds it beside its codes)
                kind = np.int32 if start + count < 2**31 else np.int64
                position_of_row = np.empty(count, kind)
                position_of_row[self.segment_rows[start:start + count]] = np.arange(start, start + count, dtype=kind)
            for first, block in segment_files.blocks(self._segment(s), rows):
                positions = (np.arange(start + first, start + first + len(block)) if position_of_row is None
                             else position_of_row[first:first + len(block)])
                if self._normalizes:
                    block /= np.maximum(self.norms[positions], np.float32(1e-30))[:, None]
                yield positions, block

    def exact(self, q, positions):
        """FAISS's by-index kernels (one query against its own candidates, in
        parallel over queries) read the candidate rows straight from the map, one
        call per segment touched (the other segments' candidates masked as -1).
        Direct reads: the distinct candidates' rows are read first, then the
        same kernels run on them (the same arithmetic, so the same distances)."""
        if self._readers is not None:
            return self._exact_on_read_rows(q, positions)
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
            local = np.ascontiguousarray(self._local(positions, 0))
            kernel(faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(self._segment(0)),
                   faiss.swig_ptr(local), self.dimensions, r, c)
        else:
            seg = np.searchsorted(self.starts, positions, side="right") - 1
            part = np.empty((r, c), dtype=np.float32)
            for s in np.unique(seg[positions >= 0]):
                local = np.ascontiguousarray(self._local(np.where(seg == s, positions, -1), int(s)))
                kernel(faiss.swig_ptr(part), faiss.swig_ptr(q), faiss.swig_ptr(self._segment(int(s))),
                       faiss.swig_ptr(local), self.dimensions, r, c)
                np.copyto(out, part, where=local >= 0)
        valid = positions >= 0
        if not squared:
            out = self._from_inner_products(q, positions, out)
        out[~valid] = np.inf
        return out

    def _exact_on_read_rows(self, q, positions):
        positions = np.asarray(positions, dtype=np.int64)
        valid = positions >= 0
        distinct, inverse = np.unique(positions[valid], return_inverse=True)
        rows = np.empty((len(distinct), self.dimensions), dtype=np.float32)
        for s, local, where in self._split(distinct):
            reader = self._readers[s]
            if reader is None:
                raise RuntimeError("the vectors of this index are not present here")
            rows[where] = reader.rows(local)
        read = MappedVectors([rows], None if self.norms is None else self.norms[distinct], self.config,
                             self.dimensions)
        local = np.full(positions.shape, -1, dtype=np.int64)
        local[valid] = inverse.reshape(-1)
        return read.exact(q, local)

    def give_back_pages(self) -> None:
        """The segments' mapped pages leave this process's memory (the page
        cache keeps them): a measurement re-ranks up to hundreds of thousands
        of rows, a 4 KB page each, that would otherwise count in the build's
        RSS until it ends."""
        for array in self.segments:
            if array is not None:
                segment_files.release(array, 0, len(array))

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
        return sum(int(a.nbytes) for a in (self.norms, self.segment_rows) if a is not None)

    @property
    def mapped_bytes(self) -> int:
        return int(self.size) * self.dimensions * 4


def _row_type(largest_segment: int):
    return np.int32 if largest_segment < 2**31 else np.int64


def segment_path(folder: str, name: str) -> str:
    return os.path.join(folder, f"{name}.npy")


def row_norms(x: np.ndarray) -> np.ndarray:
    """float32 L2 norm of each row, computed in blocks (x may be memory-mapped)."""
    out = np.empty(len(x), dtype=np.float32)
    for s, block in segment_files.blocks(x):
        out[s:s + len(block)] = np.linalg.norm(block, axis=1)
    return out
