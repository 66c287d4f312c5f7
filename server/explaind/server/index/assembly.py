"""Building an index's contents from examples: the examples checked, the
plan's FAISS index trained (codebooks where the plan has codes) and filled,
the full vectors kept where the kind keeps them.

Errors name no request field: callers attach the field (errors.attach_fields)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from explaind.server.errors import InvalidArgument
from explaind.server.index import distances
from explaind.server.index.backend import build_cpu_index, flat_storage
from explaind.server.index.config import IndexPlan, SearchConfig, plan_index, with_dimensions
from explaind.server.index.contents import IndexContents
from explaind.server.index.crowding import encode_tags
from explaind.server.index.ids import ExampleIds
from explaind.server.index.kinds import IndexKind
from explaind.server.index.meta import Lineage
from explaind.server.index.postings import RestrictPostings
from explaind.server.index.restricts import Namespace
from explaind.server.index.vectors import SCAN_ROWS, HeldVectors, MappedVectors, Vectors, row_norms


def build_contents(embeddings: np.ndarray, ids: list[str], restricts: list[list[Namespace]] | None,
                   crowding_tags: list[str | None] | None, config: SearchConfig,
                   plan: IndexPlan | None = None) -> IndexContents:
    """`embeddings` (n, d) float32 may be memory-mapped (a retrain): it is read in blocks."""
    emb = embeddings if isinstance(embeddings, np.ndarray) and embeddings.dtype == np.float32 \
        and embeddings.flags.c_contiguous else np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2:
        raise InvalidArgument(f"embeddings must be a matrix, got shape {emb.shape}")
    n, d = emb.shape
    config = with_dimensions(config, d)
    check_finite(emb, ids)
    ids = [str(i) for i in ids]
    restricts = restricts if restricts is not None else [[] for _ in range(n)]
    crowding_tags = crowding_tags if crowding_tags is not None else [None] * n
    if not len(ids) == len(restricts) == len(crowding_tags) == n:
        raise ValueError("embeddings, ids, restricts and crowding_tags must have the same length")
    check_unique(ids)
    codes, vocab = encode_tags(crowding_tags)
    return assemble(config, emb, ExampleIds.of(ids), RestrictPostings.build(restricts), codes, vocab,
                    plan=plan, lineage=Lineage(trained=n, next_default_id=n))


def assemble(config: SearchConfig, emb: np.ndarray, ids: ExampleIds, postings: RestrictPostings,
             tag_codes: np.ndarray, tag_vocab: list[str], *, plan: IndexPlan | None, lineage: Lineage) -> IndexContents:
    """New contents over every row of `emb` (checked already), whose other attributes are given."""
    n, d = emb.shape
    plan = plan or plan_index(config, n)
    cpu_index = build_cpu_index(emb, config, plan, lambda block: distances.prepare(block, config))
    kind, names = plan.kind, ()
    if kind is IndexKind.FLAT:
        flat = flat_storage(cpu_index)
        prepared = flat if flat is not None else np.zeros((0, d), np.float32)
        vectors: Vectors = HeldVectors(prepared, emb if distances.normalizes(config) else prepared, config)
    elif kind.compressed:
        norms = row_norms(emb) if distances.normalizes(config) else None
        vectors = MappedVectors([emb], norms, config, d)
        names = (None,)                                 # the segment is named when saved
    else:
        vectors = HeldVectors(distances.prepare(emb, config), emb, config)
    return IndexContents(config=config, kind=kind, ids=ids, vectors=vectors, faiss_index=cpu_index,
                         postings=postings, tag_codes=tag_codes, tag_vocab=tag_vocab, lineage=lineage,
                         segment_names=names)


def check_finite(emb: np.ndarray, ids: Sequence[str]) -> None:
    for s in range(0, len(emb), SCAN_ROWS):          # in blocks: emb may be memory-mapped
        ok = np.isfinite(emb[s:s + SCAN_ROWS]).all(axis=1)
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
