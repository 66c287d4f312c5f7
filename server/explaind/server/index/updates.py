"""An update: new contents from an index's, less removed examples, plus added
ones. A compressed index encodes the additions with its trained codebooks (a
new vector segment, in list order: codes.py) and hides the removed positions
(the live mask) without touching the rest, then measures its recall again
(with its settings as they are) where its vectors are all here; other kinds,
and a retrain, rebuild compactly (a rebuild measures, and tunes what the
config leaves open, as a build does)."""
from __future__ import annotations

import dataclasses
import os

import faiss
import numpy as np

from explaind.server.errors import DimensionMismatch, InvalidArgument
from explaind.server.index import codes, compressed, distances, segments
from explaind.server.index.assembly import assemble, check_finite, check_unique
from explaind.server.index.backend import fast_scan
from explaind.server.index.contents import IndexContents
from explaind.server.index.crowding import encode_tags
from explaind.server.index.meta import Lineage
from explaind.server.index.vectors import SCAN_ROWS

# Rows of the additions the order of their segment is learned from (codes.subcell_centroids).
ORDER_SAMPLE = 1 << 16


@dataclasses.dataclass
class Additions:
    """Examples an update adds, in the order they get positions."""
    embeddings: np.ndarray
    ids: list[str]
    restricts: list
    tags: list[str | None]


def updated(contents: IndexContents, additions: Additions | None, remove: np.ndarray,
            retrain: bool = False, segment_path: str | None = None) -> IndexContents:
    """These examples less the positions `remove`, plus `additions`. A
    compressed index writes its new segment into `segment_path` (None: memory)."""
    remove = np.unique(np.asarray(remove, dtype=np.int64))
    if remove.size and (remove[0] < 0 or remove[-1] >= contents.size or not contents.is_live(remove).all()):
        raise ValueError("remove names positions that are not live examples")
    if additions is not None:
        additions = _checked(contents, additions)
    added = 0 if additions is None else len(additions.ids)
    if contents.live_count - remove.size + added == 0:
        raise InvalidArgument("the update would leave the model without examples; delete the model instead")
    if contents.kind.compressed and not retrain:
        new = _appended(contents, additions, remove, segment_path)
    else:
        new = _rebuilt(contents, additions, remove, segment_path)
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


def _appended(c: IndexContents, a: Additions | None, remove: np.ndarray, segment_path: str | None) -> IndexContents:
    cpu_index = faiss.clone_index(c.require_faiss_index())
    if remove.size:
        cpu_index.remove_ids(remove)
    live = np.ones(c.size, bool) if c.live is None else c.live.copy()
    live[remove] = False
    ids, postings, tag_codes, vocab = c.ids, c.postings, c.tag_codes, c.tag_vocab
    vectors, names = c.vectors, c.segment_names
    if a is not None and len(a.ids):
        ivf = faiss.extract_index_ivf(cpu_index)
        sample = segments.gather(a.embeddings, np.linspace(0, len(a.ids) - 1, min(len(a.ids), ORDER_SAMPLE))
                                 .astype(np.int64))
        cells = codes.subcell_centroids(ivf, c.code_space.apply(distances.prepare(sample, c.config)))
        encoded = codes.encode(ivf, c.code_space, a.embeddings, c.config, c.size, cells, segment_path)
        ids = ids.extended(a.ids)
        postings = postings.extended(a.restricts)
        new_codes, vocab = encode_tags(a.tags, c.tag_vocab)
        tag_codes = np.concatenate([tag_codes, new_codes])
        vectors = vectors.with_segment(encoded.segment, encoded.norms, encoded.rows)
        names = (*names, None)                              # the new segment is named when saved
        live = np.concatenate([live, np.ones(len(a.ids), bool)])
    added = 0 if a is None else len(a.ids)
    lineage = dataclasses.replace(c.lineage, added=c.lineage.added + added,
                                  removed=c.lineage.removed + int(remove.size),
                                  next_default_id=c.lineage.next_default_id + added)
    live_mask = None if live.all() else live
    search_index, recall = None, None
    new = dataclasses.replace(c, ids=ids, vectors=vectors, faiss_index=cpu_index, codes_shell=None, postings=postings,
                              tag_codes=tag_codes, tag_vocab=vocab, live=live_mask, lineage=lineage,
                              segment_names=names)
    if new.vectors_present():               # the recall measured again, with the settings as they are
        search_index = fast_scan(cpu_index)
        recall = compressed.measure_index(search_index, c.code_space, vectors, new.config, live_mask)
    return dataclasses.replace(new, recall=recall, search_index=search_index)


def _rebuilt(c: IndexContents, a: Additions | None, remove: np.ndarray, segment_path: str | None) -> IndexContents:
    keep = c.live_positions()
    if remove.size:
        keep = np.setdiff1d(keep, remove, assume_unique=True)
    added = 0 if a is None else len(a.ids)
    # The kept and added embeddings, in memory, or beside the new segment when it goes to a file
    # (a retrain of a large model then holds the codes, not the vectors).
    staged = None if segment_path is None else segment_path + ".rebuild"
    writer = segments.SegmentWriter(len(keep) + added, c.dimensions, staged)
    for s in range(0, len(keep), SCAN_ROWS):
        block = keep[s:s + SCAN_ROWS]
        writer.write(np.arange(s, s + len(block)), c.vectors.originals(block))
    ids, postings = c.ids.taken(keep), c.postings.taken(keep)
    tag_codes, vocab = c.tag_codes[keep], c.tag_vocab
    if added:
        for s, block in segments.blocks(a.embeddings):
            writer.write(np.arange(len(keep) + s, len(keep) + s + len(block)), block)
        ids, postings = ids.extended(a.ids), postings.extended(a.restricts)
        new_codes, vocab = encode_tags(a.tags, vocab)
        tag_codes = np.concatenate([tag_codes, new_codes])
    emb = writer.finish()
    lineage = Lineage(trained=len(emb), next_default_id=c.lineage.next_default_id + added)
    try:
        return assemble(c.config, emb, ids, postings, tag_codes, vocab, plan=None, lineage=lineage,
                        segment_path=segment_path)
    finally:
        if staged is not None:
            os.unlink(staged)         # read by now: the new segment holds the vectors
