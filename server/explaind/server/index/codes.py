"""A compressed index's codes and full vectors, written in the order of its
lists.

The coarse centroids are trained once on a bounded sample of the prepared
vectors (k-means, TRAIN_MAX_POINTS at most), in their own space; a code shape
(code_space.py) then sees them rotated like the vectors. The vectors are
read twice, block by block, never whole:

  1. each row's list, and its cell among SUBCELLS residual centroids of the
     list's neighbourhood (a second, small k-means of the sample's residuals);
  2. segment rows in (list, cell) order; each block's rows written at their
     segment rows (segments.SegmentWriter) and encoded into their lists
     (the lists already known), with their positions as ids. A new build's
     codes go to their slots in list order in a scratch file instead, then
     are packed list by list into the fast-scan copy it searches: the codes
     are held once (plain_codes.py). An update's go into the plain lists.

So a list's rows are contiguous in the segment, sorted so that near rows
share pages: a query's re-ranked candidates (from a few lists) fault in few
pages. An example keeps its position (the order of the data set); the
segment's row of each position is kept beside it (MappedVectors.segment_rows). An
update writes its additions' segment the same way.
"""
from __future__ import annotations

import dataclasses

import faiss
import numpy as np

from explaind.server.index import distances, plain_codes, segments
from explaind.server.index.even_lists import even_lists
from explaind.server.index.code_space import CodeShape, CodeSpace
from explaind.server.index.config import MIN_POINTS_PER_LIST, SearchConfig

# k-means samples at most this many points per list (FAISS's own default cap),
# drawn with a fixed seed so builds are reproducible.
TRAIN_POINTS_PER_LIST = 256
TRAIN_SEED = 1234
# Training samples at most this many points in all: k-means costs
# points x nlist x d per iteration, and past a million points the centroids
# barely move (each list still gets >= 39 points up to nlist = 26k).
TRAIN_MAX_POINTS = 1 << 20
# k-means iterations of the coarse centroids (FAISS's IVF default is 10): on
# bench/bench_ann.py's mixture (one list probed) 15 raise recall@10 from 0.950 to
# 0.956 at 22 re-ranked candidates; 20 add 0.001. Costs 1.5x the coarse training.
COARSE_ITERATIONS = 15
# Cells a list's rows are sorted by (about 16 rows, 2 pages at d = 128, each in lists of 1000).
SUBCELLS = 64
# The product quantizer's k-means (16 centroids a sub-quantizer): sample rows and iterations.
PQ_TRAIN_ROWS = 4096
PQ_ITERATIONS = 20
# Rows encoded at a time (128 MB at d = 128): each block writes into every list it touches.
ADD_ROWS = 1 << 18


@dataclasses.dataclass
class Encoded:
    """What encoding wrote: the segment (in list order), the segment row of
    each example (in data order), and each example's norm where the measure
    normalizes."""
    segment: np.ndarray
    rows: np.ndarray
    norms: np.ndarray | None


def training_rows(n: int, nlist: int) -> np.ndarray | None:
    """Sorted rows of the training sample (None: all of them)."""
    cap = min(n, max(nlist * MIN_POINTS_PER_LIST, min(nlist * TRAIN_POINTS_PER_LIST, TRAIN_MAX_POINTS)))
    if n <= cap:
        return None
    return np.sort(np.random.default_rng(TRAIN_SEED).choice(n, cap, replace=False))


def code_metric(config: SearchConfig) -> int:
    """L1 has no product quantizer in FAISS: its codes are trained for L2,
    whose candidates the exact L1 re-rank then orders."""
    metric = distances.faiss_metric(config)
    return faiss.METRIC_L2 if metric == faiss.METRIC_L1 else metric


def train_coarse(sample: np.ndarray, nlist: int, config: SearchConfig) -> np.ndarray:
    """(nlist, d) coarse centroids of prepared vectors: k-means as FAISS's IVF
    trains them, then (squared-L2 lists) moved to make lists of more even size
    (even_lists.py), on at most TRAIN_POINTS_PER_LIST points a list."""
    d = sample.shape[1]
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    quantizer = faiss.IndexFlat(d, code_metric(config))
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, code_metric(config))
    ivf.cp.niter = COARSE_ITERATIONS
    ivf.train(sample)
    centroids = quantizer.reconstruct_n(0, nlist)
    if code_metric(config) != faiss.METRIC_L2:
        return centroids
    cap = nlist * TRAIN_POINTS_PER_LIST
    if len(sample) > cap:
        sample = sample[np.sort(np.random.default_rng(TRAIN_SEED).choice(len(sample), cap, replace=False))]
    return even_lists(sample, centroids)


def codes_index(centroids: np.ndarray, shape: CodeShape, config: SearchConfig, nprobe: int) -> faiss.IndexIVFPQ:
    """An empty 4-bit IVF-PQ of `shape` over lists with these centroids (in the
    codes' space); its product quantizer still to train (`train_codes`)."""
    nlist, dims = centroids.shape
    metric = code_metric(config)
    quantizer = faiss.IndexFlat(dims, metric)
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    index = faiss.IndexIVFPQ(quantizer, dims, nlist, shape.pq_m, 4, metric)
    # codes of the vectors as they are, not of their residual to the list's centroid:
    # a query's lookup table then serves every list it probes
    index.by_residual = False
    quantizer.this.disown()  # the IVF index owns and frees its quantizer
    index.own_fields = True
    index.nprobe = nprobe
    return index


def train_codes(index: faiss.IndexIVFPQ, sample: np.ndarray) -> None:
    """The product quantizer, on a sample in the codes' space (the lists are
    trained already). Sub-quantizers of one or two dimensions train here, all
    at once in numpy: FAISS trains them one after another, each k-means
    iteration a parallel region of a few microseconds of work, which on a busy
    machine costs more in thread hand-offs than in arithmetic (seconds a build)."""
    pq = index.pq
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    if pq.dsub > 2 or pq.nbits != 4 or index.by_residual:
        index.train(sample)
        return
    if len(sample) > PQ_TRAIN_ROWS:
        sample = sample[np.sort(np.random.default_rng(TRAIN_SEED).choice(len(sample), PQ_TRAIN_ROWS, replace=False))]
    centroids = _pq_kmeans(sample.reshape(len(sample), pq.M, pq.dsub), pq.ksub)
    faiss.copy_array_to_vector(centroids.ravel(), pq.centroids)
    index.is_trained = True


def _pq_kmeans(x: np.ndarray, k: int) -> np.ndarray:
    """(M, k, dsub) centroids of each sub-vector's k-means (x: (n, M, dsub)),
    started from quantiles of the sub-vectors' first dimension."""
    n, m, dsub = x.shape
    if dsub == 1:
        return _kmeans_1d(x[:, :, 0], k)[:, :, None]
    order = np.argsort(x[:, :, 0], axis=0)
    picks = order[np.minimum(n - 1, ((np.arange(k) + 0.5) * n / k).astype(np.int64))]        # (k, M)
    centroids = np.ascontiguousarray(np.take_along_axis(x, picks[:, :, None], axis=0).transpose(1, 0, 2))
    flat_index = np.arange(m)[None, :] * k
    for _ in range(PQ_ITERATIONS):
        dist = ((x[:, :, None, :] - centroids[None]) ** 2).sum(axis=3)       # (n, M, k)
        cell = (dist.argmin(axis=2) + flat_index).ravel()
        counts = np.bincount(cell, minlength=m * k).reshape(m, k)
        for j in range(dsub):
            sums = np.bincount(cell, weights=x[:, :, j].ravel(), minlength=m * k).reshape(m, k)
            centroids[:, :, j] = np.where(counts > 0, sums / np.maximum(counts, 1), centroids[:, :, j])
    return centroids.astype(np.float32)


def _kmeans_1d(x: np.ndarray, k: int) -> np.ndarray:
    """(M, k) centroids of each column's 1-D k-means: on sorted values a cell is
    a run between midpoints, its mean a difference of cumulative sums."""
    n, m = x.shape
    values = np.sort(x.astype(np.float64), axis=0)
    sums = np.vstack([np.zeros((1, m)), np.cumsum(values, axis=0)])
    centroids = values[np.minimum(n - 1, ((np.arange(k) + 0.5) * n / k).astype(np.int64))].T.copy()   # (M, k)
    for _ in range(PQ_ITERATIONS):
        edges = np.empty((m, k + 1), np.int64)
        edges[:, 0], edges[:, -1] = 0, n
        for j in range(m):
            edges[j, 1:-1] = np.searchsorted(values[:, j], (centroids[j, :-1] + centroids[j, 1:]) / 2)
        counts = np.diff(edges, axis=1)
        cols = np.arange(m)[:, None]
        means = (sums[edges[:, 1:], cols] - sums[edges[:, :-1], cols]) / np.maximum(counts, 1)
        new = np.sort(np.where(counts > 0, means, centroids), axis=1)
        if np.array_equal(new, centroids):
            break
        centroids = new
    return centroids.astype(np.float32)


def subcell_centroids(index: faiss.IndexIVFPQ, sample: np.ndarray) -> np.ndarray | None:
    """SUBCELLS centroids of the sample's residuals to their lists (codes' space); None when too few."""
    cells = min(SUBCELLS, len(sample) // MIN_POINTS_PER_LIST)
    if cells < 2:
        return None
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    lists = _assign(index, sample)
    residuals = sample - index.quantizer.reconstruct_n(0, index.nlist)[lists]
    kmeans = faiss.Kmeans(sample.shape[1], cells, niter=10, seed=TRAIN_SEED)
    kmeans.train(residuals)
    return kmeans.centroids


def encode(index: faiss.IndexIVFPQ, space: CodeSpace, embeddings: np.ndarray, config: SearchConfig,
           first_position: int, cells: np.ndarray | None, segment_path: str | None = None,
           search_copy: faiss.Index | None = None) -> Encoded:
    """Adds every row of `embeddings` (originals, n x d; may be memory-mapped)
    to `index` (ids first_position, first_position + 1, ...), and writes the
    originals in list order (into `segment_path`, or memory). With
    `search_copy` (an empty fast-scan copy of `index`, a new build's), the
    codes go into it instead, `index` keeping its lists empty: they are
    written in list order beside the segment (or in memory) and packed into
    the copy list by list (plain_codes.py), so they are held once."""
    n, d = embeddings.shape

    def prepare(block):
        return distances.prepare(block, config)
    lists = np.empty(n, np.int32)
    keys = np.zeros(n, np.int64)
    centroids = index.quantizer.reconstruct_n(0, index.nlist) if cells is not None else None
    cell_index = None
    if cells is not None:
        cell_index = faiss.IndexFlatL2(cells.shape[1])
        cell_index.add(cells)
    for s, block in segments.blocks(embeddings, ADD_ROWS):
        coded = space.apply(prepare(block))
        e = s + len(block)
        lists[s:e] = _assign(index, coded)
        if cell_index is not None:
            _, cell = cell_index.search(np.ascontiguousarray(coded - centroids[lists[s:e]]), 1)
            keys[s:e] = cell[:, 0]
    keys += lists.astype(np.int64) * SUBCELLS
    order = np.argsort(keys, kind="stable")
    del keys
    rows = np.empty(n, np.int32 if n < 2**31 else np.int64)
    rows[order] = np.arange(n)
    del order
    sizes = np.bincount(lists, minlength=index.nlist)
    if search_copy is None:
        sink = None
        fill = _presized(index, sizes)
    else:
        sink = _ListSink(plain_codes.ListOrderCodes(n, index.code_size,
                                                    None if segment_path is None else segment_path + ".codes"), sizes)
        fill = np.zeros(index.nlist, np.int64)
    writer = segments.SegmentWriter(n, d, segment_path)
    norms = np.empty(n, np.float32) if distances.normalizes(config) else None
    try:
        for s, block in segments.blocks(embeddings, ADD_ROWS):
            e = s + len(block)
            writer.write(rows[s:e], block)
            if norms is not None:
                norms[s:e] = np.linalg.norm(block, axis=1)
            _add(index, space.apply(prepare(block)), lists[s:e], first_position + s, fill, sink)
        del lists
        if sink is not None:
            plain_codes.fill(search_copy, sink.codes, sizes, sink.ids)
    except BaseException:
        writer.abandon()
        raise
    finally:
        if sink is not None:
            sink.codes.close()
    if search_copy is None:
        index.ntotal += n
    return Encoded(writer.finish(), rows, norms)


class _ListSink:
    """Where a new build's codes and ids go: at their slots in list order."""

    def __init__(self, codes: plain_codes.ListOrderCodes, sizes: np.ndarray):
        self.codes = codes
        self.ids = np.empty(codes.n, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def put(self, target: int, offset: int, ids: np.ndarray, codes: np.ndarray) -> None:
        slot = int(self.starts[target]) + offset
        self.ids[slot:slot + len(ids)] = ids
        self.codes.write(slot, codes)


def _presized(index: faiss.IndexIVFPQ, counts: np.ndarray) -> np.ndarray:
    """Grows each list once to its final size (adding entries one block at a
    time would grow each list's buffer by doubling: up to twice the codes'
    memory); returns where each list's new entries start."""
    invlists = faiss.downcast_InvertedLists(index.invlists)
    fill = np.array([invlists.list_size(int(i)) for i in range(index.nlist)], np.int64)
    for i in np.flatnonzero(counts):
        invlists.resize(int(i), int(fill[i] + counts[i]))
    return fill


def _add(index: faiss.IndexIVFPQ, coded: np.ndarray, lists: np.ndarray, first_id: int, fill: np.ndarray,
         sink: _ListSink | None = None) -> None:
    """Encodes a block and writes its entries at each list's fill point (advanced):
    into the index's lists, or the sink's slots."""
    n = len(coded)
    assigned = lists.astype(np.int64)
    codes = np.empty((n, index.code_size), np.uint8)
    index.encode_vectors(n, faiss.swig_ptr(coded), faiss.swig_ptr(assigned), faiss.swig_ptr(codes))
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    order = np.argsort(assigned, kind="stable")
    codes, ids, assigned = np.ascontiguousarray(codes[order]), ids[order], assigned[order]
    bounds = np.flatnonzero(np.diff(assigned)) + 1
    invlists = index.invlists
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, n]):
        target = int(assigned[a])
        run_ids, run_codes = ids[a:b], codes[a:b]          # named: swig_ptr keeps no reference
        if sink is not None:
            sink.put(target, int(fill[target]), run_ids, run_codes)
            fill[target] += b - a
            continue
        invlists.update_entries(target, int(fill[target]), int(b - a), faiss.swig_ptr(run_ids),
                                faiss.swig_ptr(run_codes))
        fill[target] += b - a


def _assign(index: faiss.IndexIVFPQ, coded: np.ndarray) -> np.ndarray:
    _, lists = index.quantizer.search(np.ascontiguousarray(coded, dtype=np.float32), 1)
    return lists[:, 0]
