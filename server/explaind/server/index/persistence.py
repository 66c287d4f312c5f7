"""An index's contents to and from plain files in a local folder (no pickle):
index.faiss, meta.json (meta.py), ids, restricts, crowding tags, the live mask,
and the full vectors where the kind keeps them outside FAISS. A compressed
index's vectors live in segment files (`{name}.npy`, segments.py) beside the
build's files or in a folder its builds share; the build's files hold each
position's row in its segment (segments are in list order) and the rotation
its codes are of, if any (code_space.py).

Format 1 folders (Flat or IVF-Flat, ids.json, embeddings.npy) still load;
an update rebuilds them, and they are saved in format 2."""
from __future__ import annotations

import json
import os

import faiss
import numpy as np

from explaind.server.index import distances, plain_codes, segments
from explaind.server.index.backend import flat_storage
from explaind.server.index.code_space import CodeSpace
from explaind.server.index.config import SearchConfig
from explaind.server.index.contents import IndexContents
from explaind.server.index.ids import ExampleIds
from explaind.server.index.kinds import IndexKind
from explaind.server.index.meta import FORMAT_VERSION, READABLE_FORMATS, IndexInfo, IndexMeta, Lineage, Segment
from explaind.server.index.postings import RestrictPostings
from explaind.server.index.row_reads import MAPPED
from explaind.server.index.vectors import HeldVectors, MappedVectors, Vectors, segment_path

_FAISS_FILE = "index.faiss"
_EMBEDDINGS = "embeddings.npy"      # a held index's originals, when FAISS does not hold them
_NORMS = "norms.npy"                # a compressed index's row norms (normalizing measures)
_SEGMENT_ROWS = "segment_rows.npy"  # ... each position's row in its segment (in list order)
_ROTATION = "rotation.npy"          # ... the principal components its codes are of
_LIVE = "live.npy"
_TAG_CODES = "crowding_codes.npy"
_TAG_VOCAB = "crowding_tags.json"


def save(c: IndexContents, info: IndexInfo, folder: str, segments_folder: str | None = None,
         segment_name: str = "vectors") -> tuple[str, ...]:
    """Into an existing folder. A compressed index's vectors not saved yet go to
    `segments_folder` (default: `folder`) as `{segment_name}.npy`; the segments
    it shares with its base are named, not copied. Returns the segment names."""
    if c.codes_held_once:           # a new build's: the plain index written list by list
        plain_codes.write(c.codes_shell, c.search_index, os.path.join(folder, _FAISS_FILE))
    else:
        faiss.write_index(c.require_faiss_index(), os.path.join(folder, _FAISS_FILE))
    names = list(c.segment_names)
    vectors = c.vectors
    if isinstance(vectors, MappedVectors):
        pending = [i for i, name in enumerate(names) if name is None]
        if len(pending) > 1:
            raise ValueError("at most one new segment per saved build")
        for i in pending:
            _save_segment(segment_path(segments_folder or folder, segment_name), vectors.segments[i])
            names[i] = segment_name
        if vectors.norms is not None:
            np.save(os.path.join(folder, _NORMS), vectors.norms, allow_pickle=False)
        if vectors.segment_rows is not None:
            np.save(os.path.join(folder, _SEGMENT_ROWS), vectors.segment_rows, allow_pickle=False)
        if c.code_space.rotated:
            np.save(os.path.join(folder, _ROTATION), c.code_space.rotation, allow_pickle=False)
    elif isinstance(vectors, HeldVectors) and not (c.kind is IndexKind.FLAT and vectors.originals_are_prepared):
        # a flat index's FAISS storage holds its vectors, unless the measure normalized them
        np.save(os.path.join(folder, _EMBEDDINGS), vectors.original_matrix, allow_pickle=False)
    if c.live is not None:
        np.save(os.path.join(folder, _LIVE), c.live, allow_pickle=False)
    np.save(os.path.join(folder, _TAG_CODES), c.tag_codes, allow_pickle=False)
    c.postings.save(folder)
    rows = np.diff(vectors.starts).tolist() if isinstance(vectors, MappedVectors) else []
    IndexMeta(format_version=FORMAT_VERSION, kind=c.kind, config=c.config, info=info, size=c.size,
              dimensions=c.dimensions, ids=c.ids.save(folder),
              segments=tuple(Segment(n, int(r)) for n, r in zip(names, rows)), lineage=c.lineage,
              last_update=c.last_update).write(folder)
    _write_json(os.path.join(folder, _TAG_VOCAB), c.tag_vocab)
    return tuple(names)


def load(folder: str, segments_folder: str | None = None, keep_codes: bool = False,
         rerank_reads: str = MAPPED) -> IndexContents:
    """`keep_codes`: a compressed index keeps its plain codes (to append to and
    save), and opens its segments only if they are there (an update measures
    recall against them); otherwise it is loaded for searching. `rerank_reads`:
    how a compressed index's re-ranks read its segments (row_reads.py)."""
    meta = IndexMeta.read(folder)
    if not meta.readable:
        raise ValueError(f"unsupported index format {meta.format_version!r} in {folder}: this explaind reads "
                         f"formats {', '.join(map(str, READABLE_FORMATS))}; upload the model again")
    cpu_index = faiss.read_index(os.path.join(folder, _FAISS_FILE))
    if meta.info.nlist:
        cpu_index.nprobe = meta.info.nprobe
    if meta.format_version == 1:
        return _load_v1(folder, meta, cpu_index)
    vectors: Vectors
    if meta.kind.compressed:
        names, rows = meta.segment_names, [s.rows for s in meta.segments]
        norms, segment_rows, rotation = (_optional(folder, name) for name in (_NORMS, _SEGMENT_ROWS, _ROTATION))
        present = all(os.path.exists(segment_path(segments_folder or folder, n)) for n in names)
        if keep_codes and not present:
            vectors = MappedVectors([None] * len(names), norms, meta.config, meta.dimensions, rows, segment_rows)
        else:
            vectors = MappedVectors.open(segments_folder or folder, names, rows, norms, meta.config, meta.dimensions,
                                         segment_rows, rerank_reads)
        space = CodeSpace(rotation)
        if space.dims(meta.dimensions) != cpu_index.d:
            raise ValueError(f"{folder}: the codes have {cpu_index.d} dimensions, the rotation gives "
                             f"{space.dims(meta.dimensions)}")
    else:
        names, vectors, space = [], _held_vectors(folder, cpu_index, meta.config), CodeSpace()
    return IndexContents(config=meta.config, kind=meta.kind, ids=ExampleIds.load(folder, meta.ids), vectors=vectors,
                         faiss_index=cpu_index, lineage=meta.lineage, segment_names=tuple(names),
                         live=_optional(folder, _LIVE), last_update=meta.last_update, code_space=space,
                         recall=meta.info.recall, tuning=meta.info.tuning, **_attributes(folder))


def _optional(folder: str, name: str) -> np.ndarray | None:
    path = os.path.join(folder, name)
    return np.load(path, allow_pickle=False) if os.path.exists(path) else None


def _load_v1(folder: str, meta: IndexMeta, cpu_index: faiss.Index) -> IndexContents:
    """Format 1: Flat or IVF-Flat, ids.json, embeddings.npy beside all but a flat index that holds them."""
    ids = ExampleIds.of(_read_json(os.path.join(folder, "ids.json")))
    return IndexContents(config=meta.config, kind=meta.kind, ids=ids,
                         vectors=_held_vectors(folder, cpu_index, meta.config), faiss_index=cpu_index,
                         lineage=Lineage(trained=len(ids), next_default_id=len(ids)), **_attributes(folder))


def _attributes(folder: str) -> dict:
    """What every format keeps alike: restricts and crowding tags."""
    return dict(postings=RestrictPostings.load(folder),
                tag_codes=np.load(os.path.join(folder, _TAG_CODES), allow_pickle=False),
                tag_vocab=_read_json(os.path.join(folder, _TAG_VOCAB)))


def _held_vectors(folder: str, cpu_index: faiss.Index, config: SearchConfig) -> HeldVectors:
    """A flat index's own storage (and the originals beside it when the measure
    normalizes), or an IVF-Flat index's embeddings.npy."""
    stored = flat_storage(cpu_index)
    embeddings_file = os.path.join(folder, _EMBEDDINGS)
    originals = np.load(embeddings_file, allow_pickle=False) if os.path.exists(embeddings_file) else stored
    if originals is None:
        if cpu_index.ntotal == 0:
            empty = np.zeros((0, cpu_index.d), np.float32)
            return HeldVectors(empty, empty, config)
        raise ValueError(f"{folder} lacks {_EMBEDDINGS} and its index does not hold them")
    prepared = stored if stored is not None else distances.prepare(originals, config)
    return HeldVectors(prepared, originals, config)


def _save_segment(path: str, array: np.ndarray) -> None:
    """A segment already in a file (written by the build: segments.SegmentWriter)
    is linked there, else copied block by block; one in memory is written with
    its data on a page boundary."""
    source = getattr(array, "filename", None)
    if source and os.path.exists(source):
        if os.path.exists(path) and os.path.samefile(source, path):
            return
        try:
            os.link(source, path)
            return
        except OSError:
            pass            # another file system: copied below
    with open(path, "wb") as f:
        f.write(segments.npy_header(array.shape))
        for _, block in segments.blocks(array):
            f.write(block.tobytes())


def _write_json(path: str, value) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f)


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)

