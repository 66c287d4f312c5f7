"""What each example carries besides its vector (id, restricts, crowding tag),
gathered batch by batch into the compact forms an index keeps.

A build of N examples used to hold them as Python lists until the index was
made: an id string, a list of restricts and a tag reference each, about 140
bytes an example (1.4 GB at 10M) before the index copied them into compact
arrays. `AttributesBuilder` appends each batch straight into those arrays: ids
as UTF-8 bytes and offsets (nothing while every id is its own position),
restricts as postings, tags as codes; a 64-bit hash per id (8 bytes an
example) finds duplicates at the end."""
from __future__ import annotations

import dataclasses
from array import array
from collections import defaultdict
from typing import Sequence

import numpy as np

from explaind.server.errors import InvalidArgument
from explaind.server.index.ids import ExampleIds
from explaind.server.index.postings import RestrictPostings
from explaind.server.index.restricts import Namespace


@dataclasses.dataclass(frozen=True)
class ExampleAttributes:
    ids: ExampleIds
    postings: RestrictPostings
    tag_codes: np.ndarray           # int32 per example, -1: no tag
    tag_vocab: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def restricts(self) -> list[list[Namespace]]:
        """Each example's restricts as lists (for code that takes them so)."""
        return self.postings.per_example()

    def tags(self) -> list[str | None]:
        return [self.tag_vocab[c] if c >= 0 else None for c in self.tag_codes.tolist()]


class AttributesBuilder:
    def __init__(self):
        self._count = 0
        self._implicit = True                   # every id so far is str(its position)
        self._blob = bytearray()
        self._offsets = array("q", [0])
        self._hashes = array("q")
        self._allow: dict[tuple[str, str], array] = defaultdict(lambda: array("i"))
        self._deny: dict[tuple[str, str], array] = defaultdict(lambda: array("i"))
        self._tag_codes = array("i")
        self._vocab: dict[str, int] = {}

    def __len__(self) -> int:
        return self._count

    def add(self, ids: Sequence[str], restricts: Sequence[Sequence[Namespace]], tags: Sequence[str | None]) -> None:
        """The next examples (positions len(self), len(self) + 1, ...)."""
        if not len(ids) == len(restricts) == len(tags):
            raise ValueError("ids, restricts and tags must have the same length")
        first = self._count
        ids = [str(i) for i in ids]
        if self._implicit and any(i != str(first + p) for p, i in enumerate(ids)):
            self._explicit(first)
        if not self._implicit:
            encoded = [i.encode("utf-8") for i in ids]
            for e in encoded:
                self._blob += e
                self._offsets.append(len(self._blob))
            self._hashes.extend(hash(e) for e in encoded)
        for p, namespaces in enumerate(restricts, start=first):
            for ns in namespaces or ():
                for token in set(ns.allow):
                    self._allow[(ns.name, token)].append(p)
                for token in set(ns.deny):
                    self._deny[(ns.name, token)].append(p)
        vocab = self._vocab
        self._tag_codes.extend(-1 if not t else vocab.setdefault(t, len(vocab)) for t in tags)
        self._count += len(ids)

    def _explicit(self, count: int) -> None:
        """The implicit ids so far ("0" .. str(count - 1)) written out."""
        for p in range(count):
            e = str(p).encode()
            self._blob += e
            self._offsets.append(len(self._blob))
            self._hashes.append(hash(e))
        self._implicit = False

    def result(self, field: str | None = None) -> ExampleAttributes:
        """The attributes; InvalidArgument (naming `field`) when an id repeats."""
        if self._implicit:
            ids = ExampleIds(self._count)
        else:
            ids = ExampleIds(self._count, np.frombuffer(bytes(self._blob), dtype=np.uint8).copy(),
                             np.frombuffer(self._offsets, dtype=np.int64).copy())
            _check_unique(ids, np.frombuffer(self._hashes, dtype=np.int64), field)
        postings = RestrictPostings.from_lists(self._count, {k: np.frombuffer(v, np.int32) for k, v in self._allow.items()},
                                               {k: np.frombuffer(v, np.int32) for k, v in self._deny.items()})
        return ExampleAttributes(ids, postings, np.frombuffer(self._tag_codes, dtype=np.int32).copy(),
                                 list(self._vocab))


def _check_unique(ids: ExampleIds, hashes: np.ndarray, field: str | None) -> None:
    order = np.argsort(hashes, kind="stable")
    same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
    seen: dict[str, int] = {}
    for position in np.unique(np.concatenate([order[same], order[same + 1]])).tolist():   # rows sharing a hash
        value = ids[position]
        if value in seen:
            raise InvalidArgument(f"duplicate example id {value!r} (examples {seen[value]} and {position})",
                                  field=field)
        seen[value] = position


def of_lists(ids: Sequence[str], restricts: Sequence[Sequence[Namespace]] | None,
             tags: Sequence[str | None] | None) -> ExampleAttributes:
    """The attributes of examples given as lists (None: no restricts, no tags)."""
    builder = AttributesBuilder()
    builder.add(ids, restricts if restricts is not None else [()] * len(ids),
                tags if tags is not None else [None] * len(ids))
    return builder.result()
