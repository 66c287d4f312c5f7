"""Building an index's contents from examples: the examples checked, the
plan's FAISS index trained and filled, the full vectors kept where the kind
keeps them. A compressed kind's build (codes in list order, code shape and
open settings picked by measuring, recall measured) is compressed.py's.

Errors name no request field: callers attach the field (errors.attach_fields)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from explaind.server.errors import InvalidArgument
from explaind.server.index import attributes, compressed, distances, segments
from explaind.server.index.attributes import ExampleAttributes
from explaind.server.index.backend import build_cpu_index, flat_storage
from explaind.server.index.config import IndexPlan, SearchConfig, plan_index, with_dimensions
from explaind.server.index.contents import IndexContents
from explaind.server.index.ids import ExampleIds
from explaind.server.index.kinds import IndexKind
from explaind.server.index.meta import Lineage, RecallReport
from explaind.server.index.postings import RestrictPostings
from explaind.server.index.restricts import Namespace
from explaind.server.index.vectors import HeldVectors, Vectors


def build_contents(embeddings: np.ndarray, ids: Sequence[str], restricts: Sequence[Sequence[Namespace]] | None,
                   crowding_tags: Sequence[str | None] | None, config: SearchConfig,
                   plan: IndexPlan | None = None, segment_path: str | None = None) -> IndexContents:
    """`embeddings` (n, d) float32 may be memory-mapped: it is read in blocks.
    `segment_path`: where a compressed index writes its vector segment (None: memory)."""
    if not len(ids) == len(embeddings) == (len(restricts) if restricts is not None else len(ids)) \
            == (len(crowding_tags) if crowding_tags is not None else len(ids)):
        raise ValueError("embeddings, ids, restricts and crowding_tags must have the same length")
    emb = _matrix(embeddings)
    check_finite(emb, ids)          # before the ids' own checks, as ever
    return _new(emb, attributes.of_lists(ids, restricts, crowding_tags), config, plan, segment_path)


def contents_of(embeddings: np.ndarray, examples: ExampleAttributes, config: SearchConfig,
                plan: IndexPlan | None = None, segment_path: str | None = None) -> IndexContents:
    """As build_contents, the examples' attributes gathered already (attributes.py)."""
    emb = _matrix(embeddings)
    if len(examples) != len(emb):
        raise ValueError(f"{len(emb)} embeddings for {len(examples)} examples")
    check_finite(emb, examples.ids)
    return _new(emb, examples, config, plan, segment_path)


def _new(emb: np.ndarray, examples: ExampleAttributes, config: SearchConfig, plan: IndexPlan | None,
         segment_path: str | None) -> IndexContents:
    n, d = emb.shape
    return assemble(with_dimensions(config, d), emb, examples.ids, examples.postings, examples.tag_codes,
                    examples.tag_vocab, plan=plan, lineage=Lineage(trained=n, next_default_id=n),
                    segment_path=segment_path)


def _matrix(embeddings: np.ndarray) -> np.ndarray:
    emb = embeddings if isinstance(embeddings, np.ndarray) and embeddings.dtype == np.float32 \
        and embeddings.flags.c_contiguous else np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2:
        raise InvalidArgument(f"embeddings must be a matrix, got shape {emb.shape}")
    return emb


def assemble(config: SearchConfig, emb: np.ndarray, ids: ExampleIds, postings: RestrictPostings,
             tag_codes: np.ndarray, tag_vocab: list[str], *, plan: IndexPlan | None, lineage: Lineage,
             segment_path: str | None = None) -> IndexContents:
    """New contents over every row of `emb` (checked already), whose other
    attributes are given. A plan given is built as it is (its code shape too)."""
    n, d = emb.shape
    given = plan is not None
    plan = plan or plan_index(config, n)
    attributes = dict(ids=ids, postings=postings, tag_codes=tag_codes, tag_vocab=tag_vocab, lineage=lineage)
    if plan.kind.compressed:
        built = compressed.build(emb, config, plan, shape_given=given, segment_path=segment_path)
        return IndexContents(config=built.config, kind=plan.kind, vectors=built.vectors, faiss_index=None,
                             codes_shell=built.shell,
                             segment_names=(None,),         # the segment is named when saved
                             code_space=built.space, recall=built.recall, tuning=built.tuning,
                             search_index=built.search_index, **attributes)
    cpu_index = build_cpu_index(emb, config, plan, lambda block: distances.prepare(block, config))
    if plan.kind is IndexKind.FLAT:
        flat = flat_storage(cpu_index)
        prepared = flat if flat is not None else np.zeros((0, d), np.float32)
        vectors: Vectors = HeldVectors(prepared, emb if distances.normalizes(config) else prepared, config)
    else:
        vectors = HeldVectors(distances.prepare(emb, config), emb, config)
    exact = RecallReport(recall=1.0, neighbor_count=max(1, config.neighbor_count), queries=0,
                         floor=config.recall_floor) if plan.kind is IndexKind.FLAT else None
    return IndexContents(config=config, kind=plan.kind, vectors=vectors, faiss_index=cpu_index, recall=exact,
                         **attributes)


def check_finite(emb: np.ndarray, ids: Sequence[str]) -> None:
    for s, block in segments.blocks(emb):            # in blocks: emb may be memory-mapped
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            raise InvalidArgument(f"example {ids[s + int(np.flatnonzero(~ok)[0])]!r} has a non-finite embedding")


def check_unique(ids: list[str]) -> None:
    if len(set(ids)) == len(ids):
        return
    seen: dict[str, int] = {}
    for pos, i in enumerate(ids):
        if i in seen:
            raise InvalidArgument(f"duplicate example id {i!r} (examples {seen[i]} and {pos})")
        seen[i] = pos
