"""Given rows of a segment file, read through its mapping or with O_DIRECT.

A re-rank reads ~100 rows scattered over a file that may be far larger than
memory. Through the mapping each row costs at least its 4 KiB page from disk
(MADV_RANDOM, segments.py), 8x a 512-byte row: on data whose candidates do not
share pages that is 7x the candidate bytes. O_DIRECT reads only the 512-byte
blocks that cover each row, but never from the page cache, so a warm read
costs a disk read too: `direct` suits indexes larger than memory (`choose`).

Direct reads: the rows' blocks, sorted, adjacent or overlapping ones merged
into one read, go into one aligned buffer (an anonymous mmap is page
aligned); each read is an os.preadv, split over a few threads (it releases
the GIL, and the disk serves reads at once). The block size is probed when
the file is opened (512, else 4096); a file system that refuses O_DIRECT
(tmpfs: EINVAL) falls back to the mapping, logged once.
"""
from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

AUTO, MAPPED, DIRECT = "auto", "mapped", "direct"
MODES = (AUTO, MAPPED, DIRECT)
# `auto` reads directly once the segments exceed this share of the process's memory:
# below it they mostly stay in the page cache, where the mapping reads nothing from disk.
DIRECT_ABOVE_MEMORY_SHARE = 0.5
BLOCK_SIZES = (512, 4096)       # O_DIRECT's alignment: the device's logical block, tried smallest first
# A query's reads are split over this many threads (preadv releases the GIL): the disk
# serves several at once, so a cold re-rank of 100 rows waits for a few reads' time, not
# a hundred (docs/scaling.md: 8 beat 1, 4 and 16).
READ_THREADS = 8

_fallback_logged = threading.Event()
_threads: ThreadPoolExecutor | None = None     # shared by every reader of the process, made on first use
_threads_lock = threading.Lock()


def choose(setting: str, segment_bytes: int, memory_bytes: int) -> str:
    """MAPPED or DIRECT for a model whose segments hold `segment_bytes`, in a process that may use `memory_bytes`."""
    if setting not in MODES:
        raise ValueError(f"--rerank-reads must be one of {', '.join(MODES)}, got {setting!r}")
    if setting != AUTO:
        return setting
    return DIRECT if segment_bytes > DIRECT_ABOVE_MEMORY_SHARE * memory_bytes else MAPPED


def reader(array: np.ndarray, mode: str = MAPPED) -> "RowReader":
    """Rows of a (n, d) float32 segment; DIRECT needs a file-backed np.memmap (else, and
    where the file system refuses O_DIRECT, the mapping is read)."""
    # (the .npy header's length is a multiple of 16: rows start on a float)
    if mode == DIRECT and isinstance(array, np.memmap) and array.filename and array.offset % 4 == 0:
        opened = _open_direct(array.filename)
        if opened is not None:
            return DirectRows(array, *opened)
    return RowReader(array)


class RowReader:
    """Reads rows through the array (the mapping: the page cache, faulting in 4 KiB pages)."""
    mode = MAPPED

    def __init__(self, array: np.ndarray):
        self.array = array
        self.rows_count, self.dimensions = int(array.shape[0]), int(array.shape[1])

    def rows(self, local: np.ndarray) -> np.ndarray:
        """(len(local), d) float32: row local[i] of the segment, in the order given (repeats allowed)."""
        local = self._checked(local)
        return np.asarray(self.array[local], dtype=np.float32)

    def _checked(self, local: np.ndarray) -> np.ndarray:
        local = np.asarray(local, dtype=np.int64).reshape(-1)
        if local.size and (local.min() < 0 or local.max() >= self.rows_count):
            bad = local[(local < 0) | (local >= self.rows_count)][0]
            raise IndexError(f"row {int(bad)} is outside the segment's {self.rows_count} rows")
        return local


class DirectRows(RowReader):
    """Reads rows with O_DIRECT: the 512-byte blocks covering them, not the pages."""
    mode = DIRECT

    def __init__(self, array: np.memmap, fd: int, block: int):
        super().__init__(array)
        self.path = array.filename
        self.fd, self.block = fd, block
        self.data_offset = int(array.offset)           # the .npy header's length
        self.row_bytes = self.dimensions * 4
        weakref.finalize(self, os.close, fd)       # with the index that reads it

    def rows(self, local: np.ndarray) -> np.ndarray:
        local = self._checked(local)
        out = np.empty((len(local), self.dimensions), np.float32)
        if not len(local):
            return out
        unique, inverse = np.unique(local, return_inverse=True)      # sorted: blocks in file order
        out[:] = self._read_sorted(unique)[inverse.reshape(-1)]
        return out

    def _read_sorted(self, rows: np.ndarray) -> np.ndarray:
        """The rows (sorted, distinct) read into one aligned buffer, then copied out."""
        b, rb = self.block, self.row_bytes
        start = self.data_offset + rows * rb                       # each row's bytes in the file
        first, end = start // b, (start + rb + b - 1) // b         # the blocks covering it: [first, end)
        # a new read where a row's first block lies past the previous row's last one
        breaks = np.flatnonzero(first[1:] > end[:-1]) + 1
        run_first, run_end = first[np.r_[0, breaks]], end[np.r_[breaks, len(rows)] - 1]
        lengths = (run_end - run_first) * b
        at = np.r_[0, np.cumsum(lengths)]                          # each read's place in the buffer
        # page aligned, as O_DIRECT needs; unmapped when the last view of it goes
        buffer = mmap.mmap(-1, max(int(at[-1]), 1))
        view = memoryview(buffer)
        needed = start[np.r_[breaks, len(rows)] - 1] + rb - run_first * b     # bytes each read must return

        def read(runs):
            for i in runs:
                self._read_run(view[at[i]:at[i + 1]], int(run_first[i]) * b, int(needed[i]))
        _in_parallel(read, len(run_first))
        run_of_row = np.repeat(np.arange(len(run_first)), np.diff(np.r_[0, breaks, len(rows)]))
        where = at[run_of_row] + start - run_first[run_of_row] * b          # each row's first byte in the buffer
        floats = np.frombuffer(buffer, np.float32)
        return floats[(where // 4)[:, None] + np.arange(self.dimensions)]   # a copy: the buffer can go

    def _read_run(self, into: memoryview, offset: int, needed: int) -> None:
        done = 0
        while done < needed:
            got = os.preadv(self.fd, [into[done:]], offset + done)
            if got <= 0 or (done + got < needed and got % self.block):
                raise ValueError(f"{self.path} ends before its {self.rows_count} rows of "
                                 f"{self.dimensions} floats: the segment file is truncated")
            done += got


def _in_parallel(read: Callable[[np.ndarray], None], runs: int) -> None:
    """read(some of range(runs)) over READ_THREADS threads: this one and the pool's."""
    parts = np.array_split(np.arange(runs), min(READ_THREADS, runs))
    if len(parts) == 1:
        read(parts[0])
        return
    pending = [_pool().submit(read, part) for part in parts[1:]]
    try:
        read(parts[0])
    finally:
        for future in pending:
            future.result()         # every read done before the buffer can go; the first error raised


def _pool() -> ThreadPoolExecutor:
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = ThreadPoolExecutor(READ_THREADS - 1, thread_name_prefix="row-reads")
        return _threads


def _forget_pool() -> None:
    """A forked child has none of its parent's threads: it makes its own pool."""
    global _threads, _threads_lock
    _threads, _threads_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _open_direct(path: str) -> tuple[int, int] | None:
    """(an O_DIRECT descriptor, its block size), or None where the file system refuses O_DIRECT."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        _log_fallback(path, "this platform has no O_DIRECT")
        return None
    try:
        fd = os.open(path, os.O_RDONLY | flag)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        _log_fallback(path, os.strerror(e.errno))
        return None
    probe = memoryview(mmap.mmap(-1, max(BLOCK_SIZES)))       # aligned
    for block in BLOCK_SIZES:
        try:
            os.preadv(fd, [probe[:block]], 0)
            return fd, block
        except OSError as e:
            if e.errno != errno.EINVAL:
                os.close(fd)
                raise
    os.close(fd)
    _log_fallback(path, f"reads of {', '.join(map(str, BLOCK_SIZES))} bytes are refused")
    return None


def _log_fallback(path: str, why: str) -> None:
    if not _fallback_logged.is_set():
        _fallback_logged.set()
        log.warning("O_DIRECT reads are not possible (%s): re-ranks read segments through their mapping "
                    "(first refused: %s)", why, path)
