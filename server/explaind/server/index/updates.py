"""An update: new contents from an index's, less removed examples, plus added
ones. A compressed index encodes the additions with its trained codebooks (a
new vector segment) and hides the removed positions (the live mask) without
touching the rest; other kinds, and a retrain, rebuild compactly."""
from __future__ import annotations

import dataclasses

import faiss
import numpy as np

from explaind.server.errors import DimensionMismatch, InvalidArgument
from explaind.server.index import distances
from explaind.server.index.assembly import assemble, check_finite, check_unique
from explaind.server.index.backend import add_rows
from explaind.server.index.contents import IndexContents
from explaind.server.index.crowding import encode_tags
from explaind.server.index.meta import Lineage
from explaind.server.index.vectors import SCAN_ROWS, row_norms


@dataclasses.dataclass
class Additions:
    """Examples an update adds, in the order they get positions."""
    embeddings: np.ndarray
    ids: list[str]
    restricts: list
    tags: list[str | None]


def updated(contents: IndexContents, additions: Additions | None, remove: np.ndarray,
            retrain: bool = False) -> IndexContents:
    """These examples less the positions `remove`, plus `additions`."""
    remove = np.unique(np.asarray(remove, dtype=np.int64))
    if remove.size and (remove[0] < 0 or remove[-1] >= contents.size or not contents.is_live(remove).all()):
        raise ValueError("remove names positions that are not live examples")
    if additions is not None:
        additions = _checked(contents, additions)
    added = 0 if additions is None else len(additions.ids)
    if contents.live_count - remove.size + added == 0:
        raise InvalidArgument("the update would leave the model without examples; delete the model instead")
    if contents.kind.compressed and not retrain:
        new = _appended(contents, additions, remove)
    else:
        new = _rebuilt(contents, additions, remove)
    return dataclasses.replace(new, last_update=(added, int(remove.size)))


def _checked(contents: IndexContents, a: Additions) -> Additions:
    emb = np.ascontiguousarray(a.embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] != contents.dimensions:
        raise DimensionMismatch(f"the index has {contents.dimensions} dimensions, the added examples "
                                f"{emb.shape[1] if emb.ndim == 2 else emb.shape}")
    ids = [str(i) for i in a.ids]
    check_finite(emb, ids)
    check_unique(ids)
    if not len(ids) == len(a.restricts) == len(a.tags) == len(emb):
        raise ValueError("embeddings, ids, restricts and tags must have the same length")
    return Additions(emb, ids, list(a.restricts), list(a.tags))


def _appended(c: IndexContents, a: Additions | None, remove: np.ndarray) -> IndexContents:
    cpu_index = faiss.clone_index(c.require_faiss_index())
    if remove.size:
        cpu_index.remove_ids(remove)
    live = np.ones(c.size, bool) if c.live is None else c.live.copy()
    live[remove] = False
    ids, postings, codes, vocab = c.ids, c.postings, c.tag_codes, c.tag_vocab
    vectors, names = c.vectors, c.segment_names
    if a is not None and len(a.ids):
        add_rows(cpu_index, a.embeddings, c.size, lambda block: distances.prepare(block, c.config))
        ids = ids.extended(a.ids)
        postings = postings.extended(a.restricts)
        new_codes, vocab = encode_tags(a.tags, c.tag_vocab)
        codes = np.concatenate([codes, new_codes])
        norms = row_norms(a.embeddings) if distances.normalizes(c.config) else None
        vectors = vectors.with_segment(a.embeddings, norms)
        names = (*names, None)                              # the new segment is named when saved
        live = np.concatenate([live, np.ones(len(a.ids), bool)])
    added = 0 if a is None else len(a.ids)
    lineage = dataclasses.replace(c.lineage, added=c.lineage.added + added,
                                  removed=c.lineage.removed + int(remove.size),
                                  next_default_id=c.lineage.next_default_id + added)
    return dataclasses.replace(c, ids=ids, vectors=vectors, faiss_index=cpu_index, postings=postings,
                               tag_codes=codes, tag_vocab=vocab, live=None if live.all() else live,
                               lineage=lineage, segment_names=names)


def _rebuilt(c: IndexContents, a: Additions | None, remove: np.ndarray) -> IndexContents:
    keep = c.live_positions()
    if remove.size:
        keep = np.setdiff1d(keep, remove, assume_unique=True)
    added = 0 if a is None else len(a.ids)
    emb = np.empty((len(keep) + added, c.dimensions), dtype=np.float32)
    for s in range(0, len(keep), SCAN_ROWS):
        block = keep[s:s + SCAN_ROWS]
        emb[s:s + len(block)] = c.vectors.originals(block)
    ids, postings = c.ids.taken(keep), c.postings.taken(keep)
    codes, vocab = c.tag_codes[keep], c.tag_vocab
    if added:
        emb[len(keep):] = a.embeddings
        ids, postings = ids.extended(a.ids), postings.extended(a.restricts)
        new_codes, vocab = encode_tags(a.tags, vocab)
        codes = np.concatenate([codes, new_codes])
    lineage = Lineage(trained=len(emb), next_default_id=c.lineage.next_default_id + added)
    return assemble(c.config, emb, ids, postings, codes, vocab, plan=None, lineage=lineage)
