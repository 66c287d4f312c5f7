"""ExampleIndex: the examples' embeddings in FAISS, with exact token-restrict
filtering and crowding, persistence, updates, and a thread-safe batched search.

Three kinds (`kind`):
  flat     exact: FAISS's flat storage holds the vectors, in RAM.
  ivf_pq   treeAh: the lists hold 4-bit codes (RAM); the full vectors stay in
           memory-mapped segment files and re-rank the candidates exactly.
  ivf_flat treeAh as saved by format 1: full vectors in the lists (loads only).

Positions are stable within a build. An update of an ivf_pq index appends
positions (new codes, a new segment) and hides removed ones (the live mask)
without touching the rest; other kinds, and a retrain, rebuild compactly.

Errors name no request field: callers attach the field (errors.attach_fields).
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from typing import Callable, NamedTuple, Sequence

import faiss
import numpy as np

from explaind.server.errors import DimensionMismatch, InvalidArgument
from explaind.server.index import distances
from explaind.server.index.backend import Placement, add_rows, build_cpu_index, fast_scan
from explaind.server.index.config import IndexPlan, SearchConfig, plan_index, with_dimensions
from explaind.server.index.crowding import crowded_top_k, encode_tags, keep_mask
from explaind.server.index.filtering import Candidates, FilterPolicy, SearchContext
from explaind.server.index.ids import ExampleIds
from explaind.server.index.postings import RestrictPostings
from explaind.server.index.restricts import Namespace
from explaind.server.index.vectors import SCAN_ROWS, HeldVectors, MappedVectors, Vectors, row_norms, \
    segment_path

# Format 2 (this one) writes ids compactly and keeps a compressed index's
# vectors in segment files; format 1 folders (Flat or IVF-Flat, ids.json,
# embeddings.npy) still load, and an update rebuilds them in format 2.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
# distances one exhaustive crowded pass holds at once (64 MB of float32)
EXHAUSTIVE_FLOATS = 16 << 20


class Neighbor(NamedTuple):
    id: str             # the example's id
    distance: float     # smaller is nearer, for every measure
    position: int       # the example's row in the index


@dataclasses.dataclass(frozen=True)
class IndexInfo:
    """What was built and where it lives; saved in meta.json and shown in the Model."""
    index_type: str
    nlist: int
    nprobe: int
    device: str
    index_bytes: int        # host memory the loaded index holds
    metric: str
    mapped_bytes: int = 0   # full vectors read through a memory map (page cache, not held)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "IndexInfo":
        return cls(index_type=str(d.get("index_type", "")), nlist=int(d.get("nlist") or 0),
                   nprobe=int(d.get("nprobe") or 0), device=str(d.get("device", "cpu")),
                   index_bytes=int(d.get("index_bytes") or 0), metric=str(d.get("metric", "")),
                   mapped_bytes=int(d.get("mapped_bytes") or 0))


@dataclasses.dataclass(frozen=True)
class Lineage:
    """How far a compressed index's codebooks are from its examples: trained on
    `trained` examples, then `added` and `removed` by updates. Default ids of
    added examples continue from `next_default_id`."""
    trained: int
    added: int = 0
    removed: int = 0
    next_default_id: int = 0

    def added_fraction(self, live: int) -> float:
        return self.added / live if live else 0.0


@dataclasses.dataclass
class Additions:
    """Examples an update adds, in the order they get positions."""
    embeddings: np.ndarray
    ids: list[str]
    restricts: list
    tags: list[str | None]


class ExampleIndex:
    def __init__(self, *, config: SearchConfig, kind: str, ids: ExampleIds, vectors: Vectors,
                 cpu_index: faiss.Index, postings: RestrictPostings, tag_codes: np.ndarray,
                 tag_vocab: list[str], use_gpu: bool | None, filter_policy: FilterPolicy | None = None,
                 live: np.ndarray | None = None, lineage: Lineage | None = None,
                 segment_names: list[str | None] | None = None, keep_codes: bool = True):
        """For ivf_pq, `cpu_index` is the plain 4-bit IndexIVFPQ: searched through its
        fast-scan copy, kept itself (`keep_codes`) for saving and updating."""
        self.config = config
        self.kind = kind
        self.ids = ids
        self._vectors = vectors
        self._postings = postings
        self._tag_codes = tag_codes
        self._tag_vocab = tag_vocab
        self._live = live
        self.size = len(ids)                       # positions, removed ones included
        self.live_count = self.size if live is None else int(np.count_nonzero(live))
        self.lineage = lineage or Lineage(trained=self.live_count, next_default_id=self.size)
        self.segment_names = list(segment_names or [])
        self.last_update = (0, 0)              # (added, removed) by the update that made this index
        self.dimensions = int(vectors.dimensions)
        self._codes = cpu_index if kind == "ivf_pq" and keep_codes else None
        if kind == "ivf_pq":
            cpu_index = fast_scan(cpu_index)
        probe = self._first_live_position()
        self._placement = Placement(cpu_index, config, use_gpu,
                                    probe_vector=vectors.prepared(np.array([probe]))[0] if probe >= 0 else None,
                                    probe_id=max(probe, 0),
                                    vector_blocks=self._live_blocks if kind == "ivf_pq" and probe >= 0 else None)
        self._nlist = int(getattr(cpu_index, "nlist", 0))
        self._nprobe = int(getattr(cpu_index, "nprobe", 0)) if self._nlist else 0
        self._candidates = Candidates(
            SearchContext(self._placement, vectors, config, self._nlist, self._nprobe,
                          compressed=kind == "ivf_pq", live=live),
            filter_policy or FilterPolicy())
        pq_m = int(cpu_index.pq.M) if kind == "ivf_pq" else 0
        self.info = IndexInfo(index_type=IndexPlan(self._nlist, self._nprobe, pq_m).index_type,
                              nlist=self._nlist, nprobe=self._nprobe, device=self._placement.device,
                              index_bytes=self._index_bytes(), metric=config.distance,
                              mapped_bytes=vectors.mapped_bytes)

    def _first_live_position(self) -> int:
        if self.size == 0 or self._vectors_missing():
            return -1
        if self._live is None:
            return 0
        found = np.flatnonzero(self._live[:1 << 20])
        return int(found[0]) if found.size else (int(np.flatnonzero(self._live)[0]) if self.live_count else -1)

    def _live_blocks(self):
        """(positions, prepared vectors) of every live example, in blocks."""
        for s in range(0, self.size, SCAN_ROWS):
            positions = np.arange(s, min(s + SCAN_ROWS, self.size))
            if self._live is not None:
                positions = positions[self._live[s:s + SCAN_ROWS]]
            if positions.size:
                yield positions, self._vectors.prepared(positions)

    def _vectors_missing(self) -> bool:
        return isinstance(self._vectors, MappedVectors) and any(s is None for s in self._vectors.segments)

    @property
    def filter_policy(self) -> FilterPolicy:
        return self._candidates.policy

    @filter_policy.setter
    def filter_policy(self, policy: FilterPolicy) -> None:
        """Which filtering strategy a selectivity gets (benchmarks and tests pin one)."""
        self._candidates.policy = policy

    def tune(self, nprobe: int | None = None, approximate_neighbors_count: int | None = None) -> None:
        """Changes the lists probed and the candidates re-ranked in place (benchmarks
        sweep them on one built index; a model keeps what its config says)."""
        config = self.config
        if approximate_neighbors_count is not None:
            config = dataclasses.replace(config, approximate_neighbors_count=approximate_neighbors_count)
        if nprobe is not None and self._nlist:
            self._nprobe = min(int(nprobe), self._nlist)
            self._placement.cpu_index.nprobe = self._nprobe
            if self._placement.gpu_index is not None:
                self._placement.gpu_index.nprobe = self._nprobe
        self.config = config
        self._candidates.context = dataclasses.replace(self._candidates.context, config=config, nprobe=self._nprobe)

    @property
    def attribute_bytes(self) -> int:
        """Host memory of what each example carries besides its vector: id, restricts, crowding tag."""
        live = 0 if self._live is None else self._live.nbytes
        return self.ids.nbytes + self._postings.nbytes + self._tag_codes.nbytes + live

    def _index_bytes(self) -> int:
        """Host memory held: FAISS's part (float32 vectors or 4-bit codes, the IVF
        ids and centroids), each copy of the vectors held beside it, and the
        examples' ids, restricts and tags. Memory-mapped vectors are not held."""
        n, d = self.live_count, self.dimensions
        lists = self._nlist * d * 4 + (n * 8 if self._nlist else 0)
        if self.kind == "ivf_pq":       # 4-bit codes, and 16 centroids a sub-vector
            m = int(self._placement.cpu_index.pq.M)
            faiss_part = lists + n * ((m + 1) // 2) + 16 * d * 4
        else:
            faiss_part = lists + self.size * d * 4
        held = 0
        if isinstance(self._vectors, HeldVectors):
            flat = _flat_storage(self._placement.cpu_index)
            arrays = {id(a): a for a in (self._vectors._originals, self._vectors.matrix)
                      if not (flat is not None and np.may_share_memory(a, flat))}
            held = sum(a.nbytes for a in arrays.values())
        return faiss_part + held + self._vectors.ram_bytes + self.attribute_bytes

    def retrain_due(self, added_fraction: float) -> bool:
        """Whether codebooks trained before the updates now describe too few of the examples."""
        return self.kind == "ivf_pq" and self.lineage.added_fraction(self.live_count) > added_fraction

    # ------------------------------------------------------------------ build

    @classmethod
    def build(cls, embeddings: np.ndarray, ids: list[str], restricts: list[list[Namespace]] | None,
              crowding_tags: list[str | None] | None, config: SearchConfig,
              use_gpu: bool | None = None, filter_policy: FilterPolicy | None = None,
              plan: IndexPlan | None = None) -> "ExampleIndex":
        """`embeddings` (n, d) float32 may be memory-mapped (a retrain): it is read in blocks."""
        emb = embeddings if isinstance(embeddings, np.ndarray) and embeddings.dtype == np.float32 \
            and embeddings.flags.c_contiguous else np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.ndim != 2:
            raise InvalidArgument(f"embeddings must be a matrix, got shape {emb.shape}")
        n, d = emb.shape
        config = with_dimensions(config, d)
        _check_finite(emb, ids)
        ids = [str(i) for i in ids]
        restricts = restricts if restricts is not None else [[] for _ in range(n)]
        crowding_tags = crowding_tags if crowding_tags is not None else [None] * n
        if not len(ids) == len(restricts) == len(crowding_tags) == n:
            raise ValueError("embeddings, ids, restricts and crowding_tags must have the same length")
        _check_unique(ids)
        codes, vocab = encode_tags(crowding_tags)
        return cls._assemble(config, emb, ExampleIds.of(ids), RestrictPostings.build(restricts), codes, vocab,
                             use_gpu=use_gpu, filter_policy=filter_policy, plan=plan,
                             lineage=Lineage(trained=n, next_default_id=n))

    @classmethod
    def _assemble(cls, config: SearchConfig, emb: np.ndarray, ids: ExampleIds, postings: RestrictPostings,
                  tag_codes: np.ndarray, tag_vocab: list[str], *, use_gpu, filter_policy, plan, lineage):
        """A new index over every row of `emb` (trains codebooks where the plan has codes)."""
        n, d = emb.shape
        plan = plan or plan_index(config, n)
        prepare = lambda block: distances.prepare(block, config)  # noqa: E731
        cpu_index = build_cpu_index(emb, config, plan, prepare)
        if plan.exact:
            flat = _flat_storage(cpu_index)
            prepared = flat if flat is not None else np.zeros((0, d), np.float32)
            vectors: Vectors = HeldVectors(prepared, emb if distances.normalizes(config) else prepared, config)
            kind, names = "flat", []
        elif plan.pq_m:
            norms = row_norms(emb) if distances.normalizes(config) else None
            vectors = MappedVectors([emb], norms, config, d)
            kind, names = "ivf_pq", [None]              # the segment is named when saved
        else:
            vectors = HeldVectors(distances.prepare(emb, config), emb, config)
            kind, names = "ivf_flat", []
        return cls(config=config, kind=kind, ids=ids, vectors=vectors, cpu_index=cpu_index, postings=postings,
                   tag_codes=tag_codes, tag_vocab=tag_vocab, use_gpu=use_gpu, filter_policy=filter_policy,
                   lineage=lineage, segment_names=names)

    # ----------------------------------------------------------------- update

    def updated(self, additions: Additions | None, remove: np.ndarray, retrain: bool = False,
                use_gpu: bool | None = False) -> "ExampleIndex":
        """A new index: these examples less the positions `remove`, plus `additions`.
        A compressed index encodes the additions with its trained codebooks and
        hides the removed positions; other kinds (and `retrain`) rebuild compactly."""
        remove = np.unique(np.asarray(remove, dtype=np.int64))
        if remove.size and (remove[0] < 0 or remove[-1] >= self.size or not self._is_live(remove).all()):
            raise ValueError("remove names positions that are not live examples")
        if additions is not None:
            additions = self._checked(additions)
        added = 0 if additions is None else len(additions.ids)
        if self.live_count - remove.size + added == 0:
            raise InvalidArgument("the update would leave the model without examples; delete the model instead")
        if self.kind == "ivf_pq" and not retrain:
            index = self._appended(additions, remove, use_gpu)
        else:
            index = self._rebuilt(additions, remove, use_gpu)
        index.last_update = (added, int(remove.size))
        return index

    def _is_live(self, positions: np.ndarray) -> np.ndarray:
        return np.ones(len(positions), bool) if self._live is None else self._live[positions]

    def _checked(self, a: Additions) -> Additions:
        emb = np.ascontiguousarray(a.embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.dimensions:
            raise DimensionMismatch(f"the index has {self.dimensions} dimensions, the added examples "
                                    f"{emb.shape[1] if emb.ndim == 2 else emb.shape}")
        ids = [str(i) for i in a.ids]
        _check_finite(emb, ids)
        _check_unique(ids)
        if not len(ids) == len(a.restricts) == len(a.tags) == len(emb):
            raise ValueError("embeddings, ids, restricts and tags must have the same length")
        return Additions(emb, ids, list(a.restricts), list(a.tags))

    def _appended(self, a: Additions | None, remove: np.ndarray, use_gpu) -> "ExampleIndex":
        cpu_index = faiss.clone_index(self._require_codes())
        if remove.size:
            cpu_index.remove_ids(remove)
        live = np.ones(self.size, bool) if self._live is None else self._live.copy()
        live[remove] = False
        ids, postings, codes, vocab = self.ids, self._postings, self._tag_codes, self._tag_vocab
        vectors, names = self._vectors, list(self.segment_names)
        if a is not None and len(a.ids):
            add_rows(cpu_index, a.embeddings, self.size, lambda block: distances.prepare(block, self.config))
            ids = ids.extended(a.ids)
            postings = postings.extended(a.restricts)
            new_codes, vocab = encode_tags(a.tags, self._tag_vocab)
            codes = np.concatenate([codes, new_codes])
            norms = row_norms(a.embeddings) if distances.normalizes(self.config) else None
            vectors = vectors.with_segment(a.embeddings, norms)
            names.append(None)
            live = np.concatenate([live, np.ones(len(a.ids), bool)])
        added = 0 if a is None else len(a.ids)
        lineage = dataclasses.replace(self.lineage, added=self.lineage.added + added,
                                      removed=self.lineage.removed + int(remove.size),
                                      next_default_id=self.lineage.next_default_id + added)
        return ExampleIndex(config=self.config, kind=self.kind, ids=ids, vectors=vectors, cpu_index=cpu_index,
                            postings=postings, tag_codes=codes, tag_vocab=vocab, use_gpu=use_gpu,
                            filter_policy=self.filter_policy, live=None if live.all() else live,
                            lineage=lineage, segment_names=names)

    def _require_codes(self) -> faiss.Index:
        if self._codes is None:
            raise ValueError("this index was loaded for serving (its fast-scan copy only): load it with "
                             "without_vectors=True to update or save it")
        return self._codes

    def _rebuilt(self, a: Additions | None, remove: np.ndarray, use_gpu) -> "ExampleIndex":
        keep = np.arange(self.size) if self._live is None else np.flatnonzero(self._live)
        if remove.size:
            keep = np.setdiff1d(keep, remove, assume_unique=True)
        added = 0 if a is None else len(a.ids)
        emb = np.empty((len(keep) + added, self.dimensions), dtype=np.float32)
        for s in range(0, len(keep), SCAN_ROWS):
            block = keep[s:s + SCAN_ROWS]
            emb[s:s + len(block)] = self._vectors.originals(block)
        ids, postings = self.ids.taken(keep), self._postings.taken(keep)
        codes, vocab = self._tag_codes[keep], self._tag_vocab
        if added:
            emb[len(keep):] = a.embeddings
            ids, postings = ids.extended(a.ids), postings.extended(a.restricts)
            new_codes, vocab = encode_tags(a.tags, vocab)
            codes = np.concatenate([codes, new_codes])
        lineage = Lineage(trained=len(emb), next_default_id=self.lineage.next_default_id + added)
        return ExampleIndex._assemble(self.config, emb, ids, postings, codes, vocab, use_gpu=use_gpu,
                                      filter_policy=self.filter_policy, plan=None, lineage=lineage)

    def positions_of(self, ids: list[str]) -> dict[str, int]:
        """id -> position of the live examples among `ids`."""
        found = self.ids.positions(ids)
        if self._live is not None:
            found = {i: p for i, p in found.items() if self._live[p]}
        return found

    # ----------------------------------------------------------------- search

    def search(self, queries: np.ndarray, neighbor_count: int,
               restricts: Sequence[Sequence[Namespace] | None] | None = None,
               crowding_count: int = 0,
               on_filter_violation: Callable[[int], None] | None = None) -> list[list[Neighbor]]:
        """Per query row: its Neighbors, nearest first. Rows with identical
        restricts share one FAISS call. `on_filter_violation(rows)` hears of
        rows whose filtered search returned an excluded example (they are
        answered again, exactly)."""
        pos, dist = self.search_arrays(queries, neighbor_count, restricts, crowding_count, on_filter_violation)
        counts = (pos >= 0).sum(axis=1).tolist()
        return [self._neighbor_list(p[:n], d[:n]) for p, d, n in zip(pos.tolist(), dist.tolist(), counts)]

    def search_arrays(self, queries: np.ndarray, neighbor_count: int,
                      restricts: Sequence[Sequence[Namespace] | None] | None = None,
                      crowding_count: int = 0,
                      on_filter_violation: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """search() as arrays: (positions int64, distances float32), each (queries,
        neighbor_count), nearest first, -1 / inf past the neighbors found."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dimensions:
            raise DimensionMismatch(f"query embeddings must have {self.dimensions} dimensions, got shape {q.shape}")
        if not np.isfinite(q).all():
            raise InvalidArgument("query embedding has non-finite values")
        if restricts is not None and len(restricts) != len(q):
            raise ValueError(f"{len(restricts)} restricts for {len(q)} queries")
        if neighbor_count < 0 or crowding_count < 0:
            raise ValueError("neighbor_count and crowding_count must be >= 0")
        k = int(neighbor_count)
        out_pos = np.full((len(q), k), -1, dtype=np.int64)
        out_dist = np.full((len(q), k), np.inf, dtype=np.float32)
        if k == 0 or self.live_count == 0 or len(q) == 0:
            return out_pos, out_dist
        q = distances.prepare(q, self.config)
        groups: dict[tuple[Namespace, ...], list[int]] = defaultdict(list)
        if restricts is None:
            groups[()] = list(range(len(q)))
        else:
            for row in range(len(q)):
                groups[_query_key(restricts[row])].append(row)
        for query, rows in groups.items():
            mask = self._postings.admissible(query)
            if mask is not None and self._live is not None:
                mask &= self._live
            if len(rows) == len(q):
                self._search_group(q, k, mask, crowding_count, on_filter_violation, out_pos, out_dist)
            else:
                pos, dist = out_pos[rows], out_dist[rows]
                self._search_group(q[rows], k, mask, crowding_count, on_filter_violation, pos, dist)
                out_pos[rows], out_dist[rows] = pos, dist
        return out_pos, out_dist

    def _search_group(self, q: np.ndarray, k: int, mask: np.ndarray | None, crowding: int,
                      on_violation: Callable[[int], None] | None, out_pos: np.ndarray, out_dist: np.ndarray) -> None:
        """Fills out_pos / out_dist (len(q), k) with each row's neighbors."""
        fetch = self._candidates.provider(mask, on_violation)
        admissible = fetch.admissible
        if admissible == 0:
            return
        # Crowding drops candidates: over-fetch, then double k for the rows
        # still short until they are full or every admissible example was seen;
        # past the policy's crowding_max_fetch (a few tags crowd out everything)
        # one exact pass over all admissible examples is cheaper than a huge k.
        k_fetch = min(admissible, k if crowding == 0 else 2 * k)
        pending = np.arange(len(q))
        while pending.size:
            if crowding and k_fetch > self._candidates.policy.crowding_max_fetch:
                for row, (d, p) in zip(pending, self._exhaustive_crowded(q[pending], k, mask, crowding)):
                    out_pos[row, :len(p)], out_dist[row, :len(p)] = p, d
                break
            dist, pos, exhausted = fetch(q if pending.size == len(q) else q[pending], k_fetch)
            keep = keep_mask(pos, self._tag_codes, crowding, k)
            done = (keep.sum(axis=1) >= k) | exhausted | (k_fetch >= admissible)
            rows = np.flatnonzero(done)
            # Each row's kept candidates (at most k, in order) moved to its front.
            order = np.argsort(~keep[rows], axis=1, kind="stable")[:, :k]
            kept = np.take_along_axis(keep[rows], order, axis=1)
            width = kept.shape[1]
            out_pos[pending[rows], :width] = np.where(kept, np.take_along_axis(pos[rows], order, axis=1), -1)
            out_dist[pending[rows], :width] = np.where(kept, np.take_along_axis(dist[rows], order, axis=1), np.inf)
            pending = pending[~done]
            k_fetch = min(admissible, 2 * k_fetch)

    def _exhaustive_crowded(self, q: np.ndarray, k: int, mask: np.ndarray | None,
                            crowding: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query row: (distances, positions) of its exact crowded neighbors."""
        if mask is None:
            mask = self._live
        positions = np.arange(self.size) if mask is None else np.flatnonzero(mask)
        whole = isinstance(self._vectors, HeldVectors) and mask is None
        # Memory stays bounded: a few queries at a time against every admissible
        # vector, the vectors read in blocks (a mapped index is read in order).
        group = max(1, EXHAUSTIVE_FLOATS // max(1, len(positions)))
        out = []
        for g in range(0, len(q), group):
            rows = q[g:g + group]
            if whole:
                dist = distances.exact_distances(rows, self._vectors.matrix, self.config)
            else:
                dist = np.empty((len(rows), len(positions)), dtype=np.float32)
                for s in range(0, len(positions), SCAN_ROWS):
                    block = self._vectors.prepared(positions[s:s + SCAN_ROWS])
                    dist[:, s:s + SCAN_ROWS] = distances.exact_distances(rows, block, self.config)
            out.extend(crowded_top_k(row, positions, self._tag_codes, crowding, k) for row in dist)
        return out

    def _neighbor_list(self, positions: list[int], dists: list[float]) -> list[Neighbor]:
        make = tuple.__new__            # Neighbor(...) without its Python-level __new__: answers build many
        return [make(Neighbor, (i, d, p)) for i, d, p in zip(self.ids.many(positions), dists, positions)]

    def embeddings_of(self, positions: np.ndarray) -> np.ndarray:
        """Original (un-normalized) embeddings of the given positions."""
        return self._vectors.originals(np.asarray(positions, dtype=np.int64))

    # ------------------------------------------------------------ persistence

    def save(self, folder: str, segments_folder: str | None = None, segment_name: str = "vectors") -> None:
        """Plain files into an existing local folder; no pickle. A compressed index's
        vectors not saved yet go to `segments_folder` (default: `folder`) as
        `{segment_name}.npy`; the segments it shares with its base are named, not copied."""
        cpu_index = self._require_codes() if self.kind == "ivf_pq" else self._placement.cpu_index
        faiss.write_index(cpu_index, os.path.join(folder, "index.faiss"))
        names = list(self.segment_names)
        if self.kind == "ivf_pq":
            pending = [i for i, name in enumerate(names) if name is None]
            if len(pending) > 1:
                raise ValueError("at most one new segment per saved build")
            for i in pending:
                _save_npy(segment_path(segments_folder or folder, segment_name), self._vectors.segments[i])
                names[i] = segment_name
            if self._vectors.norms is not None:
                np.save(os.path.join(folder, "norms.npy"), self._vectors.norms, allow_pickle=False)
        elif self.kind == "flat" and self._vectors._originals is not self._vectors.matrix:
            np.save(os.path.join(folder, "embeddings.npy"), self._vectors._originals, allow_pickle=False)
        elif self.kind == "ivf_flat":
            np.save(os.path.join(folder, "embeddings.npy"), self._vectors._originals, allow_pickle=False)
        if self._live is not None:
            np.save(os.path.join(folder, "live.npy"), self._live, allow_pickle=False)
        np.save(os.path.join(folder, "crowding_codes.npy"), self._tag_codes, allow_pickle=False)
        self._postings.save(folder)
        rows = list(np.diff(self._vectors.starts).tolist()) if self.kind == "ivf_pq" else []
        meta = {"format_version": FORMAT_VERSION, "kind": self.kind, "config": self.config.to_json(),
                "info": self.info.to_json(), "size": self.size, "dimensions": self.dimensions,
                "ids": self.ids.save(folder), "segments": [{"name": n, "rows": r} for n, r in zip(names, rows)],
                "lineage": dataclasses.asdict(self.lineage), "last_update": list(self.last_update)}
        _write_json(os.path.join(folder, "meta.json"), meta)
        _write_json(os.path.join(folder, "crowding_tags.json"), self._tag_vocab)
        self.segment_names = names

    @staticmethod
    def kind_of(folder: str) -> str:
        return _saved_kind(_read_json(os.path.join(folder, "meta.json")))

    @staticmethod
    def segments_of(folder: str) -> list[str]:
        """The segment files (names) a saved index reads its vectors from."""
        meta = _read_json(os.path.join(folder, "meta.json"))
        return [s["name"] for s in meta.get("segments", [])]

    @classmethod
    def load(cls, folder: str, use_gpu: bool | None = None, filter_policy: FilterPolicy | None = None,
             segments_folder: str | None = None, without_vectors: bool = False) -> "ExampleIndex":
        """`without_vectors`: a compressed index's segments are not opened (an
        update that only appends needs its codes, not its vectors)."""
        meta = _read_json(os.path.join(folder, "meta.json"))
        version = meta.get("format_version")
        if version not in READABLE_FORMATS:
            raise ValueError(f"unsupported index format {version!r} in {folder}: this explaind reads formats "
                             f"{', '.join(map(str, READABLE_FORMATS))}; upload the model again")
        config = SearchConfig.from_json(meta["config"])
        cpu_index = faiss.read_index(os.path.join(folder, "index.faiss"))
        if meta["info"]["nlist"]:
            cpu_index.nprobe = int(meta["info"]["nprobe"])
        if version == 1:
            return cls._load_v1(folder, meta, config, cpu_index, use_gpu, filter_policy)
        kind = meta["kind"]
        ids = ExampleIds.load(folder, meta["ids"])
        d = int(meta["dimensions"])
        if kind == "ivf_pq":
            names = [s["name"] for s in meta["segments"]]
            rows = [int(s["rows"]) for s in meta["segments"]]
            norms_file = os.path.join(folder, "norms.npy")
            norms = np.load(norms_file, allow_pickle=False) if os.path.exists(norms_file) else None
            if without_vectors:
                vectors: Vectors = MappedVectors([None] * len(names), norms, config, d, rows)
            else:
                vectors = MappedVectors.open(segments_folder or folder, names, rows, norms, config, d)
        else:
            names = []
            vectors = _held_vectors(folder, cpu_index, config)
        live_file = os.path.join(folder, "live.npy")
        live = np.load(live_file, allow_pickle=False) if os.path.exists(live_file) else None
        lineage = Lineage(**{k: int(v) for k, v in meta["lineage"].items()})
        return cls(config=config, kind=kind, ids=ids, vectors=vectors, cpu_index=cpu_index,
                   postings=RestrictPostings.load(folder),
                   tag_codes=np.load(os.path.join(folder, "crowding_codes.npy"), allow_pickle=False),
                   tag_vocab=_read_json(os.path.join(folder, "crowding_tags.json")),
                   use_gpu=use_gpu, filter_policy=filter_policy, live=live, lineage=lineage,
                   segment_names=names, keep_codes=without_vectors)

    @classmethod
    def _load_v1(cls, folder, meta, config, cpu_index, use_gpu, filter_policy) -> "ExampleIndex":
        """Format 1: Flat or IVF-Flat, ids.json, embeddings.npy beside all but a flat index that holds them."""
        vectors = _held_vectors(folder, cpu_index, config)
        return cls(config=config, kind=_saved_kind(meta),
                   ids=ExampleIds.of(_read_json(os.path.join(folder, "ids.json"))), vectors=vectors,
                   cpu_index=cpu_index, postings=RestrictPostings.load(folder),
                   tag_codes=np.load(os.path.join(folder, "crowding_codes.npy"), allow_pickle=False),
                   tag_vocab=_read_json(os.path.join(folder, "crowding_tags.json")),
                   use_gpu=use_gpu, filter_policy=filter_policy)


def _held_vectors(folder: str, cpu_index: faiss.Index, config: SearchConfig) -> HeldVectors:
    """A flat index's own storage (and the originals beside it when the measure
    normalizes), or an IVF-Flat index's embeddings.npy."""
    stored = _flat_storage(cpu_index)
    embeddings_file = os.path.join(folder, "embeddings.npy")
    originals = np.load(embeddings_file, allow_pickle=False) if os.path.exists(embeddings_file) else stored
    if originals is None:
        if cpu_index.ntotal == 0:
            empty = np.zeros((0, cpu_index.d), np.float32)
            return HeldVectors(empty, empty, config)
        raise ValueError(f"{folder} lacks embeddings.npy and its index does not hold them")
    prepared = stored if stored is not None else distances.prepare(originals, config)
    return HeldVectors(prepared, originals, config)


def _check_finite(emb: np.ndarray, ids: Sequence[str]) -> None:
    for s in range(0, len(emb), SCAN_ROWS):          # in blocks: emb may be memory-mapped
        ok = np.isfinite(emb[s:s + SCAN_ROWS]).all(axis=1)
        if not ok.all():
            raise InvalidArgument(f"example {ids[s + int(np.flatnonzero(~ok)[0])]!r} has a non-finite embedding")


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def _flat_storage(cpu_index: faiss.Index) -> np.ndarray | None:
    """A flat index's vectors as a zero-copy (n, d) float32 view, valid while the
    index lives (the ExampleIndex holds both); None for other index types."""
    if not isinstance(cpu_index, faiss.IndexFlat) or cpu_index.ntotal == 0:
        return None
    view = faiss.rev_swig_ptr(cpu_index.get_xb(), cpu_index.ntotal * cpu_index.d)
    return view.reshape(cpu_index.ntotal, cpu_index.d)


def _query_key(query: Sequence[Namespace] | None) -> tuple[Namespace, ...]:
    """Hashable form of a query (tokens given as lists become tuples)."""
    return tuple(Namespace(ns.name, tuple(ns.allow), tuple(ns.deny)) for ns in query or ())


def _check_unique(ids: list[str]) -> None:
    if len(set(ids)) == len(ids):
        return
    seen: dict[str, int] = {}
    for pos, i in enumerate(ids):
        if i in seen:
            raise InvalidArgument(f"duplicate example id {i!r} (examples {seen[i]} and {pos})")
        seen[i] = pos


def _write_json(path: str, value) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)


def _saved_kind(meta: dict) -> str:
    """A saved index's kind; format 1 records none (its lists say: IVF-Flat or Flat)."""
    if meta.get("format_version") == 1:
        return "ivf_flat" if meta["info"]["nlist"] else "flat"
    return str(meta.get("kind", ""))


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
