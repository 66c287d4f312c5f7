"""Segment files (a compressed index's full vectors, `.npy`) and reading big
matrices without holding them.

Reading: a query re-ranks a few rows scattered over a file that may not be in
the page cache (100M x 128 is 51 GB). The kernel's read-ahead would turn each
row's page fault into a window of up to read_ahead_kb (MBs) read from disk, so
a mapped segment is advised MADV_RANDOM: a fault reads its page alone. The
data starts on a page boundary (the .npy header is padded to PAGE bytes), so
a row of d = 128 floats never straddles two pages, and rows are written in
the order of the index's lists (codes.py), so a query's candidates share
pages.

Memory: pages of a file mapping that a process has touched count in its RSS
until unmapped. Scans over a mapped matrix (`blocks`, `gather`) give back each
block's pages when done with it (MADV_DONTNEED on a clean file mapping drops
only this process's page-table entries: the page cache keeps the data), so a
build's RSS stays the size of a block, not of the file.
"""
from __future__ import annotations

import mmap
import os
from typing import Iterator

import numpy as np

PAGE = mmap.PAGESIZE
# rows gathered at once by scans over many positions (~32 MB at d = 128)
SCAN_ROWS = 1 << 16


# ----------------------------------------------------------------- files


def npy_header(shape: tuple[int, ...], dtype=np.float32) -> bytes:
    """A .npy (version 1.0) header padded to PAGE bytes, so the data starts on a page."""
    text = repr({"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                 "shape": tuple(int(s) for s in shape)})
    prefix = b"\x93NUMPY\x01\x00"
    length = PAGE - len(prefix) - 2
    body = text.encode("latin1")
    if len(body) + 1 > length:
        raise ValueError(f"shape {shape} does not fit a one-page header")
    return prefix + length.to_bytes(2, "little") + body + b" " * (length - len(body) - 1) + b"\n"


def open_segment(path: str, random_access: bool = True) -> np.memmap:
    """A segment file, memory-mapped read-only; advised MADV_RANDOM unless a scan will read it whole."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if random_access and isinstance(array, np.memmap) and array.size:
        array._mmap.madvise(mmap.MADV_RANDOM)
    return array


class SegmentWriter:
    """Rows written at given positions of a new (rows, d) float32 matrix: in
    memory, or into a .npy file at `path` by pwrite (nothing of it mapped, so
    nothing of it counts in this process's memory)."""

    def __init__(self, rows: int, d: int, path: str | None = None):
        self.shape = (int(rows), int(d))
        self.path = path
        self._array = np.empty(self.shape, np.float32) if path is None else None
        self._fd = None
        if path is not None:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.pwrite(self._fd, npy_header(self.shape), 0)
            os.ftruncate(self._fd, PAGE + self.shape[0] * self.shape[1] * 4)

    def write(self, targets: np.ndarray, block: np.ndarray) -> None:
        """block[i] goes to row targets[i]."""
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self._array is not None:
            self._array[targets] = block
            return
        order = np.argsort(targets, kind="stable")
        targets, block = targets[order], block[order]
        # runs of consecutive rows: one pwrite each
        breaks = np.flatnonzero(np.diff(targets) != 1) + 1
        row_bytes = self.shape[1] * 4
        for start, end in zip(np.r_[0, breaks], np.r_[breaks, len(targets)]):
            os.pwrite(self._fd, block[start:end].tobytes(), PAGE + int(targets[start]) * row_bytes)

    def finish(self) -> np.ndarray:
        """The matrix: the array, or the file mapped read-only (MADV_RANDOM)."""
        if self._array is not None:
            return self._array
        os.close(self._fd)
        self._fd = None
        return open_segment(self.path)

    def abandon(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            os.unlink(self.path)


# ------------------------------------------------------- reading in blocks


def release(array: np.ndarray, start: int, end: int) -> None:
    """Gives back the pages of rows [start, end) of a mapped matrix (see the module doc)."""
    mm = getattr(array, "_mmap", None)
    if mm is None or end <= start or not array.flags.c_contiguous:
        return
    base = np.frombuffer(mm, np.uint8).__array_interface__["data"][0]
    row_bytes = array.strides[0]
    first = array.__array_interface__["data"][0] - base + start * row_bytes
    last = array.__array_interface__["data"][0] - base + end * row_bytes
    first = (first + PAGE - 1) // PAGE * PAGE          # whole pages only: neighbours' rows stay
    last = last // PAGE * PAGE
    if last > first:
        mm.madvise(mmap.MADV_DONTNEED, first, last - first)


def blocks(array: np.ndarray, rows: int = SCAN_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, a float32 copy of the next `rows` rows) over the whole matrix,
    each block's mapped pages given back once copied."""
    n = len(array)
    mm = getattr(array, "_mmap", None)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        if mm is not None and e < n:             # the next block is read ahead while this one is used
            _will_need(array, e, min(n, e + rows))
        block = np.array(array[s:e], dtype=np.float32)
        release(array, s, e)
        yield s, block


def gather(array: np.ndarray, positions: np.ndarray, rows: int = SCAN_ROWS) -> np.ndarray:
    """array[positions] (positions sorted ascending), read in blocks of the
    matrix whose mapped pages are given back as it goes."""
    positions = np.asarray(positions, dtype=np.int64)
    if getattr(array, "_mmap", None) is None:
        return np.asarray(array[positions], dtype=np.float32)
    out = np.empty((len(positions), array.shape[1]), np.float32)
    bounds = np.searchsorted(positions, np.arange(0, len(array) + rows, rows))
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        if a < b:
            out[a:b] = array[positions[a:b]]
            release(array, int(positions[a]), int(positions[b - 1]) + 1)
    return out


def _will_need(array: np.ndarray, start: int, end: int) -> None:
    mm = array._mmap
    base = np.frombuffer(mm, np.uint8).__array_interface__["data"][0]
    row_bytes = array.strides[0]
    first = (array.__array_interface__["data"][0] - base + start * row_bytes) // PAGE * PAGE
    last = array.__array_interface__["data"][0] - base + end * row_bytes
    if last > first:
        mm.madvise(mmap.MADV_WILLNEED, first, last - first)
