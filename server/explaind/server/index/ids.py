"""Example ids by position, held compactly.

A Python list of 100M id strings costs about 6 GB (an object and a pointer
each); here ids cost their UTF-8 bytes plus an 8-byte offset, or nothing at
all when every id is its own position ("0", "1", ...: data sets without ids,
the usual case for .npy embeddings). Ids are looked up by position on every
answer; by value only while an update runs (removals, collisions).
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

BLOB = "ids_blob.npy"
OFFSETS = "ids_offsets.npy"


class ExampleIds:
    def __init__(self, count: int, blob: np.ndarray | None = None, offsets: np.ndarray | None = None):
        """blob/offsets None: implicit ids, str(position)."""
        self._count = int(count)
        self._blob = blob
        self._offsets = offsets
        self._bytes = blob.tobytes() if blob is not None else None   # one bytes object: fast slicing

    @classmethod
    def of(cls, ids: Sequence[str]) -> "ExampleIds":
        if all(i == str(p) for p, i in enumerate(ids)):
            return cls(len(ids))
        encoded = [str(i).encode("utf-8") for i in ids]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return cls(len(encoded), np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets)

    @property
    def implicit(self) -> bool:
        return self._blob is None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, position: int) -> str:
        if self._bytes is None:
            return str(position)
        return self._bytes[self._offsets[position]:self._offsets[position + 1]].decode("utf-8")

    def many(self, positions: list[int]) -> list[str]:
        if self._bytes is None:
            return list(map(str, positions))
        data, offsets = self._bytes, self._offsets
        return [data[offsets[p]:offsets[p + 1]].decode("utf-8") for p in positions]

    def __iter__(self):
        return (self[p] for p in range(self._count))

    @property
    def nbytes(self) -> int:
        return 0 if self._blob is None else self._blob.nbytes + self._offsets.nbytes

    def positions(self, wanted: Iterable[str]) -> dict[str, int]:
        """id -> position of those of `wanted` present (the last, if an id repeats)."""
        wanted = set(wanted)
        if not wanted:
            return {}
        if self._bytes is None:
            return {i: int(i) for i in wanted if i.isdigit() and str(int(i)) == i and int(i) < self._count}
        keys = {w.encode("utf-8") for w in wanted}
        data, offsets = self._bytes, self._offsets.tolist()
        return {data[offsets[p]:offsets[p + 1]].decode("utf-8"): p for p in range(self._count)
                if data[offsets[p]:offsets[p + 1]] in keys}

    def extended(self, more: Sequence[str]) -> "ExampleIds":
        """These ids followed by `more` (positions len(self) onward)."""
        if self.implicit and all(i == str(self._count + p) for p, i in enumerate(more)):
            return ExampleIds(self._count + len(more))
        head = self._as_explicit()
        tail = ExampleIds.of(list(more))._as_explicit(start=self._count)
        blob = np.concatenate([head._blob, tail._blob])
        offsets = np.concatenate([head._offsets, tail._offsets[1:] + head._offsets[-1]])
        return ExampleIds(self._count + len(more), blob, offsets)

    def taken(self, positions: np.ndarray) -> "ExampleIds":
        """The ids at `positions`, in that order (compaction)."""
        return ExampleIds.of([self[int(p)] for p in positions])

    def _as_explicit(self, start: int = 0) -> "ExampleIds":
        if not self.implicit:
            return self
        encoded = [str(start + p).encode() for p in range(self._count)]
        offsets = np.zeros(self._count + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return ExampleIds(self._count, np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets)

    # ------------------------------------------------------------ persistence

    def save(self, folder: str) -> dict:
        """Writes the arrays (none for implicit ids); returns what meta.json records."""
        if self.implicit:
            return {"count": self._count, "implicit": True}
        np.save(os.path.join(folder, BLOB), self._blob, allow_pickle=False)
        np.save(os.path.join(folder, OFFSETS), self._offsets, allow_pickle=False)
        return {"count": self._count, "implicit": False}

    @classmethod
    def load(cls, folder: str, meta: dict) -> "ExampleIds":
        count = int(meta["count"])
        if meta.get("implicit"):
            return cls(count)
        blob = np.load(os.path.join(folder, BLOB), allow_pickle=False)
        offsets = np.load(os.path.join(folder, OFFSETS), allow_pickle=False)
        if blob.dtype != np.uint8 or offsets.dtype != np.int64 or len(offsets) != count + 1 \
                or (count and (offsets[0] != 0 or offsets[-1] != len(blob) or np.any(np.diff(offsets) < 0))):
            raise ValueError(f"{folder}: the saved ids are inconsistent")
        return cls(count, blob, offsets)
