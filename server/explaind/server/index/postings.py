"""Inverted index of example restricts: (namespace, token) -> example positions,
allow and deny kept apart, so a query's admissible mask is a few numpy
scatters over postings instead of a scan of every example's tokens.

Query semantics (docs/semantics.md, Restrictions), per clause (namespace ns):
  allow tokens A: admissible = (has some a in A as allow in ns)
                               minus (has some a in A as its own deny in ns)
  deny tokens D:  minus (has some d in D as allow in ns)
  only deny tokens: everything not denied; no tokens: everything.
Clauses are ANDed.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from explaind.server.index.restricts import Namespace

_EMPTY = np.zeros(0, dtype=np.int32)


class _Postings:
    """One inverted list family: key -> sorted int32 positions, stored as a
    CSR (keys, offsets, positions) so it saves and loads as plain arrays."""

    def __init__(self, keys: list[tuple[str, str]], offsets: np.ndarray, positions: np.ndarray):
        self.keys = keys
        self.offsets = offsets
        self.positions = positions
        self._slot = {k: i for i, k in enumerate(keys)}

    @classmethod
    def from_lists(cls, lists: dict[tuple[str, str], list[int]]) -> "_Postings":
        keys = sorted(lists)
        sizes = np.array([len(lists[k]) for k in keys], dtype=np.int64)
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        positions = (np.concatenate([np.asarray(lists[k], dtype=np.int32) for k in keys])
                     if keys else _EMPTY)
        if len(positions) == 0:
            positions = _EMPTY
        return cls(keys, offsets, positions)

    def get(self, ns: str, token: str) -> np.ndarray:
        i = self._slot.get((ns, token))
        if i is None:
            return _EMPTY
        return self.positions[self.offsets[i]:self.offsets[i + 1]]

    def union(self, ns: str, tokens: Iterable[str]) -> list[np.ndarray]:
        return [p for p in (self.get(ns, t) for t in tokens) if p.size]

    def lists(self) -> dict[tuple[str, str], np.ndarray]:
        return {k: self.positions[self.offsets[i]:self.offsets[i + 1]] for i, k in enumerate(self.keys)}

    def merged(self, more: dict[tuple[str, str], list[int]]) -> "_Postings":
        """These lists with `more` appended (positions past every existing one)."""
        out = {k: [v] for k, v in self.lists().items()}
        for k, v in more.items():
            out.setdefault(k, []).append(np.asarray(v, dtype=np.int32))
        return _Postings.from_lists({k: np.concatenate(v) for k, v in out.items()})

    def remapped(self, new_position: np.ndarray) -> "_Postings":
        """Positions renumbered by new_position[old] (-1: dropped); order kept."""
        out = {}
        for k, v in self.lists().items():
            p = new_position[v]
            p = p[p >= 0]
            if p.size:
                out[k] = p.astype(np.int32)
        return _Postings.from_lists(out)

    @property
    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.positions.nbytes)


class RestrictPostings:
    def __init__(self, size: int, allow: _Postings, deny: _Postings):
        self.size = size
        self.allow = allow
        self.deny = deny

    @classmethod
    def build(cls, restricts: Sequence[Sequence[Namespace]]) -> "RestrictPostings":
        allow, deny = _lists(restricts, 0)
        return cls(len(restricts), _Postings.from_lists(allow), _Postings.from_lists(deny))

    @classmethod
    def from_lists(cls, size: int, allow: dict, deny: dict) -> "RestrictPostings":
        """(namespace, token) -> ascending positions, for allow and deny tokens."""
        return cls(size, _Postings.from_lists(allow), _Postings.from_lists(deny))

    def per_example(self) -> list[list[Namespace]]:
        """Each example's restricts, as RestrictPostings.build takes them."""
        tokens: list[dict[str, tuple[list[str], list[str]]]] = [{} for _ in range(self.size)]
        for side, postings in ((0, self.allow), (1, self.deny)):
            for (ns, token), positions in postings.lists().items():
                for p in positions.tolist():
                    tokens[p].setdefault(ns, ([], []))[side].append(token)
        return [[Namespace(ns, tuple(allow), tuple(deny)) for ns, (allow, deny) in sorted(t.items())] for t in tokens]

    def extended(self, restricts: Sequence[Sequence[Namespace]]) -> "RestrictPostings":
        """These postings followed by the restricts of positions size, size + 1, ..."""
        allow, deny = _lists(restricts, self.size)
        return RestrictPostings(self.size + len(restricts), self.allow.merged(allow), self.deny.merged(deny))

    def taken(self, positions: np.ndarray) -> "RestrictPostings":
        """The postings of `positions` (sorted), renumbered 0, 1, ... (compaction)."""
        new_position = np.full(self.size, -1, dtype=np.int64)
        new_position[positions] = np.arange(len(positions))
        return RestrictPostings(len(positions), self.allow.remapped(new_position), self.deny.remapped(new_position))

    @property
    def nbytes(self) -> int:
        return self.allow.nbytes + self.deny.nbytes

    def admissible(self, query: Sequence[Namespace] | None) -> np.ndarray | None:
        """Boolean mask of examples matching every clause; None = all of them
        (no constraining clause), so callers can take the unfiltered path."""
        mask: np.ndarray | None = None
        for clause in query or ():
            if not clause.allow and not clause.deny:
                continue  # an empty clause is a wildcard
            if clause.allow:
                m = np.zeros(self.size, dtype=bool)
                for p in self.allow.union(clause.name, clause.allow):
                    m[p] = True
                # an example's own deny token excludes it from queries allowing that token
                for p in self.deny.union(clause.name, clause.allow):
                    m[p] = False
            else:
                m = np.ones(self.size, dtype=bool)
            for p in self.allow.union(clause.name, clause.deny):
                m[p] = False
            mask = m if mask is None else np.logical_and(mask, m, out=mask)
        return mask

    # ------------------------------------------------------------ persistence

    def save(self, folder: str) -> None:
        meta = {"size": self.size, "allow_keys": self.allow.keys, "deny_keys": self.deny.keys}
        with open(os.path.join(folder, "restricts.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f)
        np.savez(os.path.join(folder, "restricts.npz"),
                 allow_offsets=self.allow.offsets, allow_positions=self.allow.positions,
                 deny_offsets=self.deny.offsets, deny_positions=self.deny.positions)

    @classmethod
    def load(cls, folder: str) -> "RestrictPostings":
        with open(os.path.join(folder, "restricts.json"), encoding="utf-8") as f:
            meta = json.load(f)
        with np.load(os.path.join(folder, "restricts.npz"), allow_pickle=False) as z:
            allow = _Postings([tuple(k) for k in meta["allow_keys"]], z["allow_offsets"], z["allow_positions"])
            deny = _Postings([tuple(k) for k in meta["deny_keys"]], z["deny_offsets"], z["deny_positions"])
        return cls(int(meta["size"]), allow, deny)


def _lists(restricts, first: int):
    allow: dict[tuple[str, str], list[int]] = defaultdict(list)
    deny: dict[tuple[str, str], list[int]] = defaultdict(list)
    for pos, namespaces in enumerate(restricts, start=first):
        for ns in namespaces or ():
            for tok in set(ns.allow):
                allow[(ns.name, tok)].append(pos)
            for tok in set(ns.deny):
                deny[(ns.name, tok)].append(pos)
    return allow, deny
