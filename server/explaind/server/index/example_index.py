"""ExampleIndex: the examples' embeddings in FAISS, with exact token-restrict
filtering and crowding, persistence, and a thread-safe batched search.

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
from explaind.server.index.backend import Placement, build_cpu_index
from explaind.server.index.config import IndexPlan, SearchConfig, plan_index
from explaind.server.index.crowding import crowded_top_k, encode_tags, keep_mask
from explaind.server.index.filtering import Candidates, FilterPolicy, SearchContext
from explaind.server.index.postings import RestrictPostings
from explaind.server.index.restricts import Namespace

FORMAT_VERSION = 1


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
    index_bytes: int
    metric: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "IndexInfo":
        return cls(index_type=str(d.get("index_type", "")), nlist=int(d.get("nlist") or 0),
                   nprobe=int(d.get("nprobe") or 0), device=str(d.get("device", "cpu")),
                   index_bytes=int(d.get("index_bytes") or 0), metric=str(d.get("metric", "")))


class ExampleIndex:
    def __init__(self, *, config: SearchConfig, ids: list[str], embeddings: np.ndarray,
                 cpu_index: faiss.Index, postings: RestrictPostings, tag_codes: np.ndarray,
                 tag_vocab: list[str], use_gpu: bool | None, filter_policy: FilterPolicy | None = None):
        self.config = config
        self.ids = ids
        # What the index holds (normalized where the measure asks for it). A flat index
        # already stores exactly that: use its storage, so each vector is held once
        # (twice under a normalizing measure, which must keep the originals too).
        stored = self._flat = _flat_storage(cpu_index)
        normalizes = distances.normalizes(config)
        if stored is not None:
            self._vectors = stored
            embeddings = embeddings if normalizes else stored
        else:
            self._vectors = distances.prepare(embeddings, config) if normalizes else embeddings
        self._embeddings = embeddings
        self._postings = postings
        self._tag_codes = tag_codes
        self._tag_vocab = tag_vocab
        self._placement = Placement(cpu_index, config, use_gpu,
                                    probe_vector=self._vectors[0] if len(self._vectors) else None)
        self.size = len(ids)
        self.dimensions = int(embeddings.shape[1])
        self._nlist = int(getattr(cpu_index, "nlist", 0))
        self._nprobe = int(getattr(cpu_index, "nprobe", 0)) if self._nlist else 0
        self._candidates = Candidates(
            SearchContext(self._placement, self._vectors, config, self._nlist, self._nprobe),
            filter_policy or FilterPolicy())
        self.info = IndexInfo(index_type=f"IVF{self._nlist},Flat" if self._nlist else "Flat",
                              nlist=self._nlist, nprobe=self._nprobe, device=self._placement.device,
                              index_bytes=self._index_bytes(), metric=config.distance)

    @property
    def filter_policy(self) -> FilterPolicy:
        return self._candidates.policy

    @filter_policy.setter
    def filter_policy(self, policy: FilterPolicy) -> None:
        """Which filtering strategy a selectivity gets (benchmarks and tests pin one)."""
        self._candidates.policy = policy

    def _in_index(self, array: np.ndarray) -> bool:
        """Whether `array` is the flat index's own storage (not a copy beside it)."""
        return self._flat is not None and np.may_share_memory(array, self._flat)

    def _index_bytes(self) -> int:
        """Host memory held: the index's vectors (float32), the IVF ids (int64) and
        centroids, and each separate copy of the embeddings kept beside it."""
        vec = self.size * self.dimensions * 4
        held = vec + (self.size * 8 + self._nlist * self.dimensions * 4 if self._nlist else 0)
        arrays = {id(a): a for a in (self._embeddings, self._vectors) if not self._in_index(a)}
        return held + sum(a.nbytes for a in arrays.values())

    # ------------------------------------------------------------------ build

    @classmethod
    def build(cls, embeddings: np.ndarray, ids: list[str], restricts: list[list[Namespace]] | None,
              crowding_tags: list[str | None] | None, config: SearchConfig,
              use_gpu: bool | None = None, filter_policy: FilterPolicy | None = None,
              plan: IndexPlan | None = None) -> "ExampleIndex":
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.ndim != 2:
            raise InvalidArgument(f"embeddings must be a matrix, got shape {emb.shape}")
        n, d = emb.shape
        if config.dimensions is not None and d != config.dimensions:
            raise DimensionMismatch(f"dimensions is {config.dimensions} but the latent space has {d} dimensions")
        if config.dimensions is None:  # presets: the latent size decides
            config = dataclasses.replace(config, dimensions=d)
        if not np.isfinite(emb).all():
            row = int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0])
            raise InvalidArgument(f"example {ids[row]!r} has a non-finite embedding")
        ids = [str(i) for i in ids]
        restricts = restricts if restricts is not None else [[] for _ in range(n)]
        crowding_tags = crowding_tags if crowding_tags is not None else [None] * n
        if not len(ids) == len(restricts) == len(crowding_tags) == n:
            raise ValueError("embeddings, ids, restricts and crowding_tags must have the same length")
        _check_unique(ids)
        plan = plan or plan_index(config, n)
        cpu_index = build_cpu_index(distances.prepare(emb, config), config, plan)
        codes, vocab = encode_tags(crowding_tags)
        return cls(config=config, ids=ids, embeddings=emb, cpu_index=cpu_index,
                   postings=RestrictPostings.build(restricts), tag_codes=codes, tag_vocab=vocab,
                   use_gpu=use_gpu, filter_policy=filter_policy)

    # ----------------------------------------------------------------- search

    def search(self, queries: np.ndarray, neighbor_count: int,
               restricts: Sequence[Sequence[Namespace] | None] | None = None,
               crowding_count: int = 0,
               on_filter_violation: Callable[[int], None] | None = None) -> list[list[Neighbor]]:
        """Per query row: its Neighbors, nearest first. Rows with identical
        restricts share one FAISS call. `on_filter_violation(rows)` hears of
        rows whose filtered search returned an excluded example (they are
        answered again, exactly)."""
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
        out: list[list[Neighbor]] = [[] for _ in range(len(q))]
        if neighbor_count == 0 or self.size == 0 or len(q) == 0:
            return out
        q = distances.prepare(q, self.config)
        groups: dict[tuple[Namespace, ...], list[int]] = defaultdict(list)
        for row in range(len(q)):
            groups[_query_key(restricts[row] if restricts is not None else None)].append(row)
        for query, rows in groups.items():
            mask = self._postings.admissible(query)
            found = self._search_group(q[rows], neighbor_count, mask, crowding_count, on_filter_violation)
            for row, neighbors in zip(rows, found):
                out[row] = neighbors
        return out

    def _search_group(self, q: np.ndarray, k: int, mask: np.ndarray | None, crowding: int,
                      on_violation: Callable[[int], None] | None) -> list[list[Neighbor]]:
        fetch = self._candidates.provider(mask, on_violation)
        admissible = fetch.admissible
        out: list[list[Neighbor]] = [[] for _ in range(len(q))]
        if admissible == 0:
            return out
        # Crowding drops candidates: over-fetch, then double k for the rows
        # still short until they are full or every admissible example was seen;
        # past the policy's crowding_max_fetch (a few tags crowd out everything)
        # one exact pass over all admissible examples is cheaper than a huge k.
        k_fetch = min(admissible, k if crowding == 0 else 2 * k)
        pending = np.arange(len(q))
        while pending.size:
            if crowding and k_fetch > self._candidates.policy.crowding_max_fetch:
                for row, neighbors in zip(pending, self._exhaustive_crowded(q[pending], k, mask, crowding)):
                    out[row] = neighbors
                break
            dist, pos, exhausted = fetch(q[pending], k_fetch)
            keep = keep_mask(pos, self._tag_codes, crowding, k)
            done = (keep.sum(axis=1) >= k) | exhausted | (k_fetch >= admissible)
            for j in np.flatnonzero(done):
                cols = np.flatnonzero(keep[j])
                out[pending[j]] = self._neighbors(pos[j, cols], dist[j, cols])
            pending = pending[~done]
            k_fetch = min(admissible, 2 * k_fetch)
        return out

    def _exhaustive_crowded(self, q: np.ndarray, k: int, mask: np.ndarray | None,
                            crowding: int) -> list[list[Neighbor]]:
        positions = np.arange(self.size) if mask is None else np.flatnonzero(mask)
        vectors = self._vectors if mask is None else self._vectors[positions]
        out = []
        for row in q:  # one row at a time: memory stays O(N)
            dist = distances.exact_distances(row[None, :], vectors, self.config)[0]
            d, pos = crowded_top_k(dist, positions, self._tag_codes, crowding, k)
            out.append(self._neighbors(pos, d))
        return out

    def _neighbors(self, positions: np.ndarray, dists: np.ndarray) -> list[Neighbor]:
        return [Neighbor(self.ids[p], float(d), int(p)) for p, d in zip(positions.tolist(), dists.tolist())]

    def embeddings_of(self, positions: np.ndarray) -> np.ndarray:
        """Original (un-normalized) embeddings of the given positions."""
        return self._embeddings[np.asarray(positions, dtype=np.int64)]

    # ------------------------------------------------------------ persistence

    def save(self, folder: str) -> None:
        """Plain files into an existing local folder; no pickle."""
        faiss.write_index(self._placement.cpu_index, os.path.join(folder, "index.faiss"))
        if not self._in_index(self._embeddings):     # else index.faiss holds them already
            np.save(os.path.join(folder, "embeddings.npy"), self._embeddings, allow_pickle=False)
        np.save(os.path.join(folder, "crowding_codes.npy"), self._tag_codes, allow_pickle=False)
        self._postings.save(folder)
        meta = {"format_version": FORMAT_VERSION, "config": self.config.to_json(), "info": self.info.to_json(),
                "size": self.size, "dimensions": self.dimensions}
        _write_json(os.path.join(folder, "meta.json"), meta)
        _write_json(os.path.join(folder, "ids.json"), self.ids)
        _write_json(os.path.join(folder, "crowding_tags.json"), self._tag_vocab)

    @classmethod
    def load(cls, folder: str, use_gpu: bool | None = None,
             filter_policy: FilterPolicy | None = None) -> "ExampleIndex":
        meta = _read_json(os.path.join(folder, "meta.json"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported index format {meta.get('format_version')!r} in {folder}")
        cpu_index = faiss.read_index(os.path.join(folder, "index.faiss"))
        if meta["info"]["nlist"]:
            cpu_index.nprobe = int(meta["info"]["nprobe"])
        embeddings_file = os.path.join(folder, "embeddings.npy")
        if os.path.exists(embeddings_file):
            embeddings = np.load(embeddings_file, allow_pickle=False)
        else:
            embeddings = _flat_storage(cpu_index)      # saved only inside index.faiss
            if embeddings is None:
                raise ValueError(f"{folder} lacks embeddings.npy and its index does not hold them")
        return cls(config=SearchConfig.from_json(meta["config"]),
                   ids=_read_json(os.path.join(folder, "ids.json")),
                   embeddings=embeddings,
                   cpu_index=cpu_index,
                   postings=RestrictPostings.load(folder),
                   tag_codes=np.load(os.path.join(folder, "crowding_codes.npy"), allow_pickle=False),
                   tag_vocab=_read_json(os.path.join(folder, "crowding_tags.json")),
                   use_gpu=use_gpu, filter_policy=filter_policy)


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


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
