"""ExampleIndex: the examples' embeddings in FAISS, placed on the CPU or a GPU
for a thread-safe batched search with exact token-restrict filtering and
crowding. It holds its contents (contents.py) and hands each job to its module:

  assembly.py      a build from examples
  updates.py       an update: additions appended and removals hidden, or a rebuild
  search.py        a batch of queries: restricts, filtering strategy, crowding
  persistence.py   save and load (meta.json: meta.py; format 1 still loads)

Its kind (kinds.py) says what the FAISS lists hold. Search knobs come with
each call (search_params.py); nothing of an index changes after it is made
but the names of the segments it saves.

Errors name no request field: callers attach the field (errors.attach_fields).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from explaind.server.index import persistence, updates
from explaind.server.index.assembly import build_contents, contents_of
from explaind.server.index.attributes import ExampleAttributes
from explaind.server.index.backend import Placement, fast_scan, flat_storage
from explaind.server.index.config import CANDIDATES, IndexPlan, SearchConfig, rerank_count, untuned_candidates
from explaind.server.index.contents import IndexContents
from explaind.server.index.faiss_search import SearchContext
from explaind.server.index.ids import ExampleIds
from explaind.server.index.kinds import IndexKind
from explaind.server.index.meta import IndexInfo, Lineage
from explaind.server.index.restricts import Namespace
from explaind.server.index.search import Neighbor, neighbor_lists, search_arrays
from explaind.server.index.search_params import DEFAULT, SearchParams
from explaind.server.index.updates import Additions
from explaind.server.index.row_reads import MAPPED
from explaind.server.index.vectors import HeldVectors, MappedVectors

__all__ = ["Additions", "ExampleAttributes", "ExampleIndex", "IndexInfo", "Lineage", "Neighbor", "SearchParams"]


class ExampleIndex:
    def __init__(self, contents: IndexContents, use_gpu: bool | None = None, keep_codes: bool = True):
        """`keep_codes`: a compressed index keeps its plain codes beside the
        fast-scan copy it searches, to save or update them; loaded for serving,
        it drops them."""
        search_index = contents.faiss_index
        if contents.kind.compressed:
            # the fast-scan copy its build measured with, else a new one
            search_index = contents.search_index if contents.search_index is not None \
                else fast_scan(contents.faiss_index)
            if not contents.codes_held_once:        # else the search copy is all of the codes
                contents = dataclasses.replace(contents, search_index=None,
                                               faiss_index=contents.faiss_index if keep_codes else None)
        self.contents = contents
        space = contents.code_space
        probe = contents.first_live_position()
        self._placement = Placement(
            search_index, contents.config, use_gpu,
            probe_vector=space.apply(contents.vectors.prepared(np.array([probe])))[0] if probe >= 0 else None,
            probe_id=max(probe, 0),
            vector_blocks=contents.code_blocks if contents.kind.compressed and probe >= 0 else None)
        nlist = int(getattr(search_index, "nlist", 0))
        nprobe = int(getattr(search_index, "nprobe", 0)) if nlist else 0
        config = contents.config
        if self._placement.device == "gpu" and contents.kind.compressed and CANDIDATES in config.open_settings:
            # candidates were tuned for the CPU's codes; the GPU twin's are coarser (gpu_codes.py)
            config = dataclasses.replace(config, approximate_neighbors_count=max(
                rerank_count(config, config.neighbor_count), rerank_count(dataclasses.replace(
                    config, approximate_neighbors_count=untuned_candidates(config)), config.neighbor_count)))
        self._context = SearchContext(self._placement, contents.vectors, config, nlist, nprobe,
                                      live_count=contents.live_count, compressed=contents.kind.compressed,
                                      space=space)
        pq_m = int(search_index.pq.M) if contents.kind.compressed else 0
        code_dims = space.dims(contents.dimensions) if space.rotated else 0
        self.info = IndexInfo(index_type=contents.kind.faiss_description(nlist, pq_m, code_dims), nlist=nlist,
                              nprobe=nprobe, device=self._placement.device,
                              index_bytes=self._index_bytes(nlist, pq_m, space.dims(contents.dimensions)),
                              metric=contents.config.distance, mapped_bytes=contents.vectors.mapped_bytes,
                              recall=contents.recall, tuning=contents.tuning)

    # ------------------------------------------------------------- what it is

    @property
    def device(self) -> str:
        """Where searches run: "cpu" or "gpu"."""
        return self._placement.device

    @property
    def config(self) -> SearchConfig:
        return self.contents.config

    @property
    def kind(self) -> IndexKind:
        return self.contents.kind

    @property
    def ids(self) -> ExampleIds:
        return self.contents.ids

    @property
    def size(self) -> int:
        """Positions, removed ones included."""
        return self.contents.size

    @property
    def live_count(self) -> int:
        return self.contents.live_count

    @property
    def dimensions(self) -> int:
        return self.contents.dimensions

    @property
    def lineage(self) -> Lineage:
        return self.contents.lineage

    @property
    def segment_names(self) -> tuple[str | None, ...]:
        return self.contents.segment_names

    @property
    def last_update(self) -> tuple[int, int]:
        """(added, removed) by the update that made this index."""
        return self.contents.last_update

    @property
    def added_since_training(self) -> int:
        """Examples encoded with codebooks trained before them (only codes have codebooks)."""
        return self.lineage.added if self.kind.compressed else 0

    def retrain_due(self, added_fraction: float) -> bool:
        """Whether codebooks trained before the updates now describe too few of the examples."""
        return self.kind.compressed and self.lineage.added_fraction(self.live_count) > added_fraction

    @property
    def attribute_bytes(self) -> int:
        """Host memory of what each example carries besides its vector: id, restricts, crowding tag."""
        c = self.contents
        live = 0 if c.live is None else c.live.nbytes
        return c.ids.nbytes + c.postings.nbytes + c.tag_codes.nbytes + live

    def _index_bytes(self, nlist: int, pq_m: int, code_dims: int) -> int:
        """Host memory held: FAISS's part (float32 vectors or 4-bit codes, the IVF
        ids and centroids), each copy of the vectors held beside it, and the
        examples' ids, restricts and tags. Memory-mapped vectors are not held."""
        c = self.contents
        n, d = c.live_count, c.dimensions
        lists = nlist * code_dims * 4 + (n * 8 if nlist else 0)
        if c.kind.compressed:       # 4-bit codes, 16 centroids a sub-vector, the codes' rotation
            rotation = c.code_space.rotation.nbytes if c.code_space.rotated else 0
            faiss_part = lists + n * ((pq_m + 1) // 2) + 16 * code_dims * 4 + rotation
        else:
            faiss_part = lists + c.size * d * 4
        held = 0
        if isinstance(c.vectors, HeldVectors):
            flat = flat_storage(self._placement.cpu_index)
            arrays = {id(a): a for a in (c.vectors.original_matrix, c.vectors.matrix)
                      if not (flat is not None and np.may_share_memory(a, flat))}
            held = sum(a.nbytes for a in arrays.values())
        return faiss_part + held + c.vectors.ram_bytes + self.attribute_bytes

    # ------------------------------------------------------- build and update

    @classmethod
    def build(cls, embeddings: np.ndarray, ids: list[str], restricts: list[list[Namespace]] | None,
              crowding_tags: list[str | None] | None, config: SearchConfig,
              use_gpu: bool | None = None, plan: IndexPlan | None = None,
              segment_path: str | None = None) -> "ExampleIndex":
        """`embeddings` (n, d) float32 may be memory-mapped: it is read in
        blocks. A compressed index writes its vector segment into
        `segment_path` (None: keeps it in memory until saved). Where the
        config leaves settings open the build measures and picks them; it
        measures the recall of every compressed index (`info.recall`)."""
        return cls(build_contents(embeddings, ids, restricts, crowding_tags, config, plan, segment_path), use_gpu)

    @classmethod
    def build_from(cls, embeddings: np.ndarray, examples: ExampleAttributes, config: SearchConfig,
                   use_gpu: bool | None = None, segment_path: str | None = None) -> "ExampleIndex":
        """build(), the examples' ids, restricts and tags gathered already
        (attributes.AttributesBuilder: a large build holds no list of them)."""
        return cls(contents_of(embeddings, examples, config, segment_path=segment_path), use_gpu)

    def updated(self, additions: Additions | None, remove: np.ndarray, retrain: bool = False,
                use_gpu: bool | None = False, segment_path: str | None = None) -> "ExampleIndex":
        """A new index: these examples less the positions `remove`, plus
        `additions` (updates.py), its recall measured again; a compressed
        index's new segment is written into `segment_path` (None: memory)."""
        return ExampleIndex(updates.updated(self.contents, additions, remove, retrain, segment_path), use_gpu)

    def positions_of(self, ids: list[str]) -> dict[str, int]:
        """id -> position of the live examples among `ids`."""
        found = self.ids.positions(ids)
        live = self.contents.live
        return found if live is None else {i: p for i, p in found.items() if live[p]}

    def embeddings_of(self, positions: np.ndarray) -> np.ndarray:
        """Original (un-normalized) embeddings of the given positions."""
        return self.contents.vectors.originals(np.asarray(positions, dtype=np.int64))

    # ----------------------------------------------------------------- search

    def search(self, queries: np.ndarray, neighbor_count: int,
               restricts: Sequence[Sequence[Namespace] | None] | None = None, crowding_count: int = 0,
               on_filter_violation: Callable[[int], None] | None = None,
               params: SearchParams = DEFAULT) -> list[list[Neighbor]]:
        """Per query row: its Neighbors, nearest first. Rows with identical
        restricts share one FAISS call. `on_filter_violation(rows)` hears of
        rows whose filtered search returned an excluded example (they are
        answered again, exactly). `params`: this call's knobs."""
        pos, dist = self.search_arrays(queries, neighbor_count, restricts, crowding_count, on_filter_violation, params)
        return neighbor_lists(self.contents, pos, dist)

    def search_arrays(self, queries: np.ndarray, neighbor_count: int,
                      restricts: Sequence[Sequence[Namespace] | None] | None = None, crowding_count: int = 0,
                      on_filter_violation: Callable[[int], None] | None = None,
                      params: SearchParams = DEFAULT) -> tuple[np.ndarray, np.ndarray]:
        """search() as arrays: (positions int64, distances float32), each (queries,
        neighbor_count), nearest first, -1 / inf past the neighbors found."""
        return search_arrays(self.contents, self._context, queries, neighbor_count, restricts, crowding_count,
                             on_filter_violation, params)

    # ------------------------------------------------------------ persistence

    def save(self, folder: str, segments_folder: str | None = None, segment_name: str = "vectors") -> None:
        """Plain files into an existing local folder (persistence.py); a new
        vector segment is named `segment_name` from then on."""
        names = persistence.save(self.contents, self.info, folder, segments_folder, segment_name)
        self.contents = dataclasses.replace(self.contents, segment_names=names)

    @classmethod
    def load(cls, folder: str, use_gpu: bool | None = None, segments_folder: str | None = None,
             keep_codes: bool = False, rerank_reads: str = MAPPED) -> "ExampleIndex":
        """`keep_codes`: a compressed index keeps its plain codes, to append to
        and save (an update that only appends), and opens its vector segments
        only where they are; otherwise it is loaded for searching.
        `rerank_reads`: MAPPED or DIRECT, how a compressed index's re-ranks read
        its segments (row_reads.py)."""
        return cls(persistence.load(folder, segments_folder, keep_codes, rerank_reads), use_gpu,
                   keep_codes=keep_codes)

    @property
    def rerank_reads(self) -> str | None:
        """How re-ranks read the full vectors (MAPPED or DIRECT); None where they are held in memory."""
        vectors = self.contents.vectors
        return vectors.reads if isinstance(vectors, MappedVectors) else None
