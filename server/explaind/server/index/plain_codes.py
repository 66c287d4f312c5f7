"""A new compressed index's codes held once: as its fast-scan copy.

A compressed index is saved and updated as a plain 4-bit IndexIVFPQ and
searched as its fast-scan copy (backend.fast_scan). A build that held both
while measuring its recall held its codes and ids twice (about 150 B an
example at d = 128). So a build keeps only the fast-scan copy and a *shell*:
the plain index trained, with empty lists (its quantizer, product quantizer,
nprobe and ntotal). The plain index is made from the two when it is needed:

  - saved: `write` streams the file faiss.write_index would write of the
    plain index, one list at a time (unpacked from the fast-scan blocks);
  - updated in memory: `plain_index` makes it whole.

The fast-scan copy itself is packed list by list from the codes written in
list order (`ListOrderCodes`: a scratch file beside the build's segment, or
memory), so the plain codes are never in memory beside it. Its entries are
those FAISS's IndexIVFPQFastScan(plain) would hold, in the same order: each
list's entries by increasing position.
"""
from __future__ import annotations

import os
import struct

import faiss
import numpy as np


class ListOrderCodes:
    """n plain codes written at their slots in list order (a list's slots are
    contiguous): into a file at `path` by pwrite (nothing of it mapped, so
    nothing of it counts in this process's memory), or memory."""

    def __init__(self, n: int, code_size: int, path: str | None = None):
        self.n, self.code_size, self.path = int(n), int(code_size), path
        self._array = np.empty((self.n, self.code_size), np.uint8) if path is None else None
        self._fd = None
        if path is not None:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.ftruncate(self._fd, self.n * self.code_size)

    def write(self, first_slot: int, codes: np.ndarray) -> None:
        if self._array is not None:
            self._array[first_slot:first_slot + len(codes)] = codes
        else:
            os.pwrite(self._fd, np.ascontiguousarray(codes).tobytes(), first_slot * self.code_size)

    def read(self, start: int, end: int) -> np.ndarray:
        """Slots [start, end), (end - start, code_size)."""
        if self._array is not None:
            return self._array[start:end]
        data = os.pread(self._fd, (end - start) * self.code_size, start * self.code_size)
        return np.frombuffer(data, np.uint8).reshape(end - start, self.code_size)

    def close(self) -> None:
        self._array = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            os.unlink(self.path)


# FAISS's fast-scan layout (pq4_pack_codes): a list's codes in blocks of bbs
# entries; in a block, for each code byte (two 4-bit sub-quantizers), runs of
# 32 entries take 32 bytes: byte j < 16 holds the even sub-quantizer of
# entries PERM[j] (low nibble) and PERM[j] + 16 (high), byte 16 + j the odd one.
# (FAISS 1.15's CodePackerPQ4 addresses entries 32-63 of a 64-entry block as
# 0-31, so its pack_1 / unpack_1 cannot serve blocks of FAST_SCAN_BLOCK.)
_PERM = np.array([0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15])
_RUN = 32


def pack(flat: np.ndarray, bbs: int) -> np.ndarray:
    """(n, code_size) plain codes -> their fast-scan blocks (the last one padded with code 0)."""
    n, code_size = flat.shape
    blocks = -(-n // bbs)
    padded = np.zeros((blocks * bbs, code_size), np.uint8)
    padded[:n] = flat
    runs = padded.reshape(blocks, bbs // _RUN, _RUN, code_size)
    low, high = runs & 15, runs >> 4
    even = low[:, :, _PERM] | (low[:, :, _PERM + 16] << 4)
    odd = high[:, :, _PERM] | (high[:, :, _PERM + 16] << 4)
    out = np.concatenate([even, odd], axis=2)                   # (blocks, runs, 32, code_size)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)).ravel()


def unpack(packed: np.ndarray, n: int, code_size: int, bbs: int) -> np.ndarray:
    """The inverse of `pack`: (n, code_size) plain codes."""
    blocks = -(-n // bbs)
    out = packed[:blocks * bbs * code_size].reshape(blocks, code_size, bbs // _RUN, _RUN).transpose(0, 2, 3, 1)
    even, odd = out[:, :, :16], out[:, :, 16:]
    low = np.empty(out.shape, np.uint8)
    high = np.empty(out.shape, np.uint8)
    low[:, :, _PERM], low[:, :, _PERM + 16] = even & 15, even >> 4
    high[:, :, _PERM], high[:, :, _PERM + 16] = odd & 15, odd >> 4
    return (low | (high << 4)).reshape(blocks * bbs, code_size)[:n]


def fill(index: faiss.Index, codes: ListOrderCodes, sizes: np.ndarray, ids: np.ndarray) -> None:
    """Packs these entries into an empty fast-scan index (backend.fast_scan of
    the shell): list i gets the next sizes[i] slots of `codes`, with their
    `ids` (in slot order), one list in memory at a time."""
    blocks = faiss.downcast_InvertedLists(index.invlists)
    bbs = int(index.bbs)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for i in np.flatnonzero(sizes):
        start, end = int(starts[i]), int(starts[i + 1])
        packed = pack(codes.read(start, end), bbs)
        list_ids = np.ascontiguousarray(ids[start:end], dtype=np.int64)
        blocks.add_entries(int(i), end - start, faiss.swig_ptr(list_ids), faiss.swig_ptr(packed))
    index.ntotal = int(sizes.sum())


def _lists_of(index: faiss.Index):
    """(list, flat codes, ids) of each non-empty list of a fast-scan index, unpacked one list at a time."""
    blocks = faiss.downcast_InvertedLists(index.invlists)
    bbs, code_size = int(index.bbs), int(index.code_size)
    for i in range(int(index.nlist)):
        n = int(blocks.list_size(i))
        if not n:
            continue
        packed = faiss.rev_swig_ptr(blocks.get_codes(i), -(-n // bbs) * bbs * code_size)
        ids = np.array(faiss.rev_swig_ptr(blocks.get_ids(i), n), dtype=np.int64)
        yield i, np.ascontiguousarray(unpack(packed, n, code_size, bbs)), ids


def plain_index(shell: faiss.IndexIVFPQ, index: faiss.Index) -> faiss.IndexIVFPQ:
    """The plain index whose fast-scan copy `index` is (a new one: the shell stays empty)."""
    plain = faiss.clone_index(shell)
    for i, codes, ids in _lists_of(index):
        plain.invlists.add_entries(i, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
    plain.ntotal = int(index.ntotal)
    plain.nprobe = int(index.nprobe)
    return plain


# The end of a saved IndexIVFPQ whose lists are all empty: ArrayInvertedLists
# ("ilar", nlist, code_size) stored sparse ("sprs") with no (list, size) pair.
_LISTS_HEAD = struct.Struct("<4sQQ")
_EMPTY_SIZES = struct.Struct("<4sQ")


def write(shell: faiss.IndexIVFPQ, index: faiss.Index, path: str) -> None:
    """The file faiss.write_index(plain_index(shell, index)) writes, one list in
    memory at a time: FAISS writes the plain index up to its lists (from the
    shell), then the lists as it stores an ArrayInvertedLists: their sizes
    (all of them, or the non-empty ones by number when at most half are),
    then each non-empty list's codes and ids."""
    nlist, code_size = int(shell.nlist), int(shell.code_size)
    shell = faiss.clone_index(shell)
    shell.ntotal, shell.nprobe = int(index.ntotal), int(index.nprobe)
    head = faiss.serialize_index(shell).tobytes()
    empty_tail = _LISTS_HEAD.pack(b"ilar", nlist, code_size) + _EMPTY_SIZES.pack(b"sprs", 0)
    if not head.endswith(empty_tail):
        raise RuntimeError("FAISS stores an empty IndexIVFPQ's lists in a layout this writer does not know")
    sizes = np.array([index.invlists.list_size(i) for i in range(nlist)], np.uint64)
    nonempty = np.flatnonzero(sizes)
    if len(nonempty) > nlist // 2:
        table = b"full" + struct.pack("<Q", nlist) + sizes.astype("<u8").tobytes()
    else:
        pairs = np.stack([nonempty.astype(np.uint64), sizes[nonempty]], axis=1).ravel()
        table = b"sprs" + struct.pack("<Q", len(pairs)) + pairs.astype("<u8").tobytes()
    with open(path, "wb") as f:
        f.write(head[:-len(empty_tail)])
        f.write(_LISTS_HEAD.pack(b"ilar", nlist, code_size))
        f.write(table)
        for _, codes, ids in _lists_of(index):
            f.write(codes.tobytes())
            f.write(ids.astype("<i8").tobytes())
