"""What an index holds, apart from where its searches run: its examples (ids,
restricts, crowding tags, full vectors), its FAISS index and its history.
assembly.py makes contents from examples, updates.py from other contents,
persistence.py from a folder; ExampleIndex places them for searching.

Positions are stable within a build. An update of a compressed index appends
positions and hides removed ones (`live`) without touching the rest."""
from __future__ import annotations

import dataclasses
import functools

import faiss
import numpy as np

from explaind.server.index import plain_codes
from explaind.server.index.code_space import CodeSpace
from explaind.server.index.config import SearchConfig
from explaind.server.index.ids import ExampleIds
from explaind.server.index.kinds import IndexKind
from explaind.server.index.meta import Lineage, RecallReport, Tuning
from explaind.server.index.postings import RestrictPostings
from explaind.server.index.vectors import SCAN_ROWS, MappedVectors, Vectors


@dataclasses.dataclass(frozen=True, eq=False)
class IndexContents:
    config: SearchConfig
    kind: IndexKind
    ids: ExampleIds
    vectors: Vectors
    # The FAISS index as built, saved and updated: for a compressed kind the plain
    # 4-bit IndexIVFPQ (searched through its fast-scan copy), None where it was
    # loaded for searching only.
    faiss_index: faiss.Index | None
    postings: RestrictPostings
    tag_codes: np.ndarray                # crowding tag of each position (crowding.py)
    tag_vocab: list[str]
    lineage: Lineage
    live: np.ndarray | None = None       # False for removed positions; None: none removed
    segment_names: tuple[str | None, ...] = ()   # a compressed index's segments; None: not saved yet
    last_update: tuple[int, int] = (0, 0)        # (added, removed) by the update that made this index
    code_space: CodeSpace = dataclasses.field(default_factory=CodeSpace)   # what the codes are of
    recall: RecallReport | None = None           # measured by the build or update that made it
    tuning: Tuning | None = None                 # settings that build picked where the config left them open
    # The fast-scan copy of a compressed kind's codes where its build made one (to
    # measure recall); ExampleIndex searches it instead of making another, then drops it here
    # unless it is all of the codes (codes_shell).
    search_index: faiss.Index | None = None
    # A new build's plain index with its lists empty: its codes are held once, in
    # search_index, and the plain index is made from the two to save or update (plain_codes.py).
    codes_shell: faiss.Index | None = None

    @property
    def size(self) -> int:
        """Positions, removed ones included."""
        return len(self.ids)

    @functools.cached_property
    def live_count(self) -> int:
        return self.size if self.live is None else int(np.count_nonzero(self.live))

    @property
    def dimensions(self) -> int:
        return int(self.vectors.dimensions)

    @property
    def codes_held_once(self) -> bool:
        """The plain codes are not held: they are search_index's (a new build's)."""
        return self.faiss_index is None and self.codes_shell is not None and self.search_index is not None

    def require_faiss_index(self) -> faiss.Index:
        """The plain index (made whole, a new one, where the codes are held once)."""
        if self.codes_held_once:
            return plain_codes.plain_index(self.codes_shell, self.search_index)
        if self.faiss_index is None:
            raise ValueError("this index was loaded for serving (its fast-scan copy only): load it with "
                             "keep_codes=True to update or save it")
        return self.faiss_index

    def is_live(self, positions: np.ndarray) -> np.ndarray:
        return np.ones(len(positions), bool) if self.live is None else self.live[positions]

    def live_positions(self) -> np.ndarray:
        return np.arange(self.size) if self.live is None else np.flatnonzero(self.live)

    def vectors_present(self) -> bool:
        """False for a compressed index loaded for appending (its segments not opened)."""
        return not (isinstance(self.vectors, MappedVectors) and any(s is None for s in self.vectors.segments))

    def first_live_position(self) -> int:
        """-1 when there is none, or its vector is not here."""
        if self.size == 0 or not self.vectors_present():
            return -1
        if self.live is None:
            return 0
        found = np.flatnonzero(self.live[:1 << 20])
        return int(found[0]) if found.size else (int(np.flatnonzero(self.live)[0]) if self.live_count else -1)

    def code_blocks(self):
        """(positions, the codes' input: prepared vectors in the code space) of every live example, in blocks."""
        for positions, block in self.vectors.prepared_blocks(SCAN_ROWS):
            if self.live is not None:
                keep = self.live[positions]
                positions, block = positions[keep], block[keep]
            if positions.size:
                yield positions, self.code_space.apply(block)
