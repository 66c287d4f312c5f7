"""Re-rank rows read through the mapping or with O_DIRECT (index/row_reads.py):
the rows against the numpy array written (the oracle), the bytes read from
disk with the file out of the page cache (/proc/self/io), the fallback where
O_DIRECT is refused, hostile positions and files, a real index's answers in
both modes, and the `auto` rule."""
import errno
import logging
import os
import sys

import numpy as np
import pytest

from explaind.server.index import ExampleIndex, SearchConfig, row_reads, segments
from explaind.server.index.vectors import MappedVectors
from explaind.server.serving import loader as loader_module
from explaind.server.serving.loader import BuildLoader
from tests import page_cache

ROWS = 5000


def write_segment(path, x, page_header=True):
    """A segment as the build writes it (data on a page), or as np.save does (a 128-byte header)."""
    if page_header:
        with open(path, "wb") as f:
            f.write(segments.npy_header(x.shape))
            f.write(np.ascontiguousarray(x, np.float32).tobytes())
    else:
        np.save(path, x)
    return segments.open_segment(str(path))


def direct_or_skip(array):
    got = row_reads.reader(array, row_reads.DIRECT)
    if got.mode != row_reads.DIRECT:
        pytest.skip(f"the file system of {array.filename} refuses O_DIRECT")
    return got


def read_bytes():
    try:
        return page_cache.read_bytes()
    except LookupError as e:
        pytest.skip(str(e))


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="/proc/self/io and posix_fadvise(DONTNEED) are Linux's")


# ------------------------------------------------------------------ rows


@pytest.mark.parametrize("page_header", [True, False], ids=["page-header", "np-save"])
@pytest.mark.parametrize("d", [128, 100, 7, 1000])
def test_direct_reads_return_the_rows_written(tmp_path, d, page_header):
    x = np.random.default_rng(d).standard_normal((ROWS, d)).astype(np.float32)
    array = write_segment(tmp_path / "s.npy", x, page_header)
    direct = direct_or_skip(array)
    rng = np.random.default_rng(1)
    positions = np.r_[rng.integers(0, ROWS, 300), 0, ROWS - 1, 17, 17, ROWS - 1, 0, 18, 16]  # unsorted, repeated
    np.testing.assert_array_equal(direct.rows(positions), x[positions])
    np.testing.assert_array_equal(direct.rows(np.arange(ROWS)), x)           # every block, one long read
    np.testing.assert_array_equal(row_reads.reader(array).rows(positions), x[positions])


def test_a_query_spread_over_many_reads_is_read_whole(tmp_path, monkeypatch):
    """More reads than threads, and fewer: every run lands in its place of the buffer."""
    x = np.random.default_rng(3).standard_normal((ROWS, 64)).astype(np.float32)
    direct = direct_or_skip(write_segment(tmp_path / "s.npy", x))
    for threads in (1, 3, row_reads.READ_THREADS):
        monkeypatch.setattr(row_reads, "READ_THREADS", threads)
        for count in (1, 2, 5, 200):
            positions = np.random.default_rng(count).choice(ROWS, count, replace=False)
            np.testing.assert_array_equal(direct.rows(positions), x[positions])


# --------------------------------------------------------- bytes from disk


@linux_only
def test_direct_reads_of_spread_rows_read_at_most_4x_their_bytes(tmp_path):
    """100 rows of 512 bytes at random over a 20 MB file: each its own page through the
    mapping (the control: about 8x), the blocks of the rows alone with O_DIRECT."""
    n, d, count = 40_000, 128, 100
    x = np.random.default_rng(5).standard_normal((n, d)).astype(np.float32)
    path = str(tmp_path / "s.npy")
    array = write_segment(path, x)
    direct = direct_or_skip(array)
    wanted = count * d * 4
    positions = np.random.default_rng(6).choice(n, count, replace=False)

    page_cache.evict([path], [array])
    before = read_bytes()
    np.testing.assert_array_equal(row_reads.reader(array).rows(positions), x[positions])
    mapped = read_bytes() - before
    if mapped == 0:
        pytest.skip("this file system's reads are not counted in /proc/self/io")
    assert mapped > 4 * wanted          # the control: the measurement sees what the mapping reads

    page_cache.evict([path], [array])
    before = read_bytes()
    np.testing.assert_array_equal(direct.rows(positions), x[positions])
    assert read_bytes() - before <= 4 * wanted


def lowdim(n, d, seed):
    """Points near a 16-dim subspace of d (bench_ann's lowdim): a query's candidates spread over many lists."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(1).standard_normal((16, d)).astype(np.float32)
    return (rng.standard_normal((n, 16)).astype(np.float32) @ basis
            + 0.1 * rng.standard_normal((n, d)).astype(np.float32))


@pytest.mark.slow
@linux_only
def test_a_direct_search_reads_at_most_4x_its_candidate_rows(tmp_path):
    n, d, candidates = 40_000, 128, 100
    config = SearchConfig(dimensions=d, distance="SQUARED_L2_DISTANCE", algorithm="tree_ah",
                          leaf_node_embedding_count=400, leaf_nodes_to_search_percent=25,
                          approximate_neighbors_count=candidates, neighbor_count=10)
    x = lowdim(n, d, 2)
    ExampleIndex.build(x, [str(i) for i in range(n)], None, None, config, use_gpu=False).save(str(tmp_path))
    index = ExampleIndex.load(str(tmp_path), use_gpu=False, rerank_reads=row_reads.DIRECT)
    if index.rerank_reads != row_reads.DIRECT:
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    files = [str(tmp_path / f"{name}.npy") for name in index.segment_names]
    read = []
    for q in lowdim(20, d, 3):
        for path, array in zip(files, index.contents.vectors.segments):
            page_cache.evict([path], [array])
        before = read_bytes()
        index.search_arrays(q[None], 10)
        read.append(read_bytes() - before)
    if not any(read):
        pytest.skip("this file system's reads are not counted in /proc/self/io")
    assert max(read) <= 4 * candidates * d * 4, read


# ---------------------------------------------------------------- fallback


def test_a_file_system_refusing_o_direct_is_read_through_the_mapping(tmp_path, monkeypatch, caplog):
    x = np.random.default_rng(8).standard_normal((ROWS, 32)).astype(np.float32)
    array = write_segment(tmp_path / "s.npy", x)
    real_open = os.open

    def refusing(path, flags, *args, **kwargs):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(row_reads.os, "open", refusing)
    monkeypatch.setattr(row_reads, "_fallback_logged", row_reads.threading.Event())
    with caplog.at_level(logging.WARNING, logger=row_reads.__name__):
        first, second = (row_reads.reader(array, row_reads.DIRECT) for _ in range(2))
    assert first.mode == second.mode == row_reads.MAPPED
    assert sum("O_DIRECT" in r.getMessage() for r in caplog.records) == 1      # logged once
    positions = np.array([9, 0, ROWS - 1, 9])
    np.testing.assert_array_equal(first.rows(positions), x[positions])
    vectors = MappedVectors([array], None, SearchConfig(dimensions=32), 32, reads=row_reads.DIRECT)
    assert vectors.reads == row_reads.MAPPED


def test_an_open_error_other_than_einval_is_raised(tmp_path, monkeypatch):
    array = write_segment(tmp_path / "s.npy", np.zeros((10, 4), np.float32))

    def denied(path, flags, *args, **kwargs):
        raise PermissionError(errno.EACCES, "denied", path)

    monkeypatch.setattr(row_reads.os, "open", denied)
    with pytest.raises(PermissionError):
        row_reads.reader(array, row_reads.DIRECT)


# ----------------------------------------------------------------- hostile


@pytest.mark.parametrize("mode", [row_reads.MAPPED, row_reads.DIRECT])
@pytest.mark.parametrize("bad", [ROWS, -1, 2**40, -(2**40)])
def test_a_row_outside_the_segment_is_refused(tmp_path, mode, bad):
    array = write_segment(tmp_path / "s.npy", np.ones((ROWS, 16), np.float32))
    reader = row_reads.reader(array, mode)
    with pytest.raises(IndexError, match=f"row {bad} is outside the segment's {ROWS} rows"):
        reader.rows(np.array([3, bad, 4]))


@pytest.mark.parametrize("mode", [row_reads.MAPPED, row_reads.DIRECT])
def test_no_rows_read_none(tmp_path, mode):
    array = write_segment(tmp_path / "s.npy", np.ones((ROWS, 16), np.float32))
    got = row_reads.reader(array, mode).rows(np.array([], np.int64))
    assert got.shape == (0, 16) and got.dtype == np.float32


def test_a_truncated_segment_is_refused_not_read_past(tmp_path):
    x = np.random.default_rng(9).standard_normal((ROWS, 100)).astype(np.float32)
    path = tmp_path / "s.npy"
    direct = direct_or_skip(write_segment(path, x))
    kept = ROWS // 2
    os.truncate(path, segments.PAGE + kept * 100 * 4 + 10)       # half the rows, and 10 bytes of the next
    np.testing.assert_array_equal(direct.rows(np.array([kept - 1, 0])), x[[kept - 1, 0]])
    for row in (kept, ROWS - 1):
        with pytest.raises(ValueError, match="truncated"):
            direct.rows(np.array([0, row]))


def test_a_truncated_segment_does_not_open(tmp_path):
    path = tmp_path / "s.npy"
    write_segment(path, np.ones((ROWS, 8), np.float32))
    os.truncate(path, segments.PAGE + 100)
    with pytest.raises(ValueError):
        segments.open_segment(str(path))


# ------------------------------------------------------------ the searches


def two_segments(tmp_path, d, reads):
    """Positions over two segment files, each written in its own row order (the build's list order)."""
    rng = np.random.default_rng(d)
    x = rng.standard_normal((3000, d)).astype(np.float32)
    order = rng.permutation(2000), rng.permutation(1000)
    arrays = [write_segment(tmp_path / f"s{i}.npy", part[o], True)
              for i, (part, o) in enumerate(((x[:2000], order[0]), (x[2000:], order[1])))]
    segment_rows = np.concatenate([np.argsort(o) for o in order])       # position -> its row in its segment
    norms = np.linalg.norm(x, axis=1).astype(np.float32)
    return x, arrays, segment_rows, norms


@pytest.mark.parametrize("distance", ["SQUARED_L2_DISTANCE", "COSINE_DISTANCE", "DOT_PRODUCT_DISTANCE",
                                      "L1_DISTANCE"])
def test_direct_re_ranks_give_the_mapped_distances_over_two_segments(tmp_path, distance):
    d = 24
    x, arrays, segment_rows, norms = two_segments(tmp_path, d, row_reads.DIRECT)
    config = SearchConfig(dimensions=d, distance=distance)
    mapped = MappedVectors(arrays, norms, config, d, segment_rows=segment_rows)
    direct = MappedVectors(arrays, norms, config, d, segment_rows=segment_rows, reads=row_reads.DIRECT)
    if direct.reads != row_reads.DIRECT:
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    rng = np.random.default_rng(4)
    q = rng.standard_normal((6, d)).astype(np.float32)
    positions = rng.integers(0, len(x), (6, 40))
    positions[1, 5:9] = -1                         # no candidate there
    positions[2] = positions[3]                    # rows shared across queries
    positions[4] = -1
    np.testing.assert_array_equal(direct.exact(q, positions), mapped.exact(q, positions))
    np.testing.assert_array_equal(direct.originals(positions[0]), x[positions[0]])
    grown = direct.with_segment(arrays[0], norms[:2000], segment_rows[:2000])
    assert grown.reads == row_reads.DIRECT and grown.size == 5000


@pytest.mark.parametrize("distance", [pytest.param("SQUARED_L2_DISTANCE", marks=pytest.mark.slow), "COSINE_DISTANCE"])
def test_a_direct_index_answers_as_the_mapped_one(tmp_path, distance):
    n, d = 6000, 32         # a compressed index from config.EXACT_BELOW examples
    config = SearchConfig(dimensions=d, distance=distance, algorithm="tree_ah", leaf_node_embedding_count=100,
                          leaf_nodes_to_search_percent=20, approximate_neighbors_count=60, neighbor_count=10)
    x = lowdim(n, d, 11)
    ExampleIndex.build(x, [str(i) for i in range(n)], None, None, config, use_gpu=False).save(str(tmp_path))
    mapped = ExampleIndex.load(str(tmp_path), use_gpu=False)
    direct = ExampleIndex.load(str(tmp_path), use_gpu=False, rerank_reads=row_reads.DIRECT)
    assert mapped.rerank_reads == row_reads.MAPPED
    if direct.rerank_reads != row_reads.DIRECT:
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT")
    queries = lowdim(25, d, 12)
    for batch in (queries, queries[:1]):
        want_pos, want_dist = mapped.search_arrays(batch, 10)
        got_pos, got_dist = direct.search_arrays(batch, 10)
        np.testing.assert_array_equal(got_pos, want_pos)
        np.testing.assert_array_equal(got_dist, want_dist)
        assert (got_pos >= 0).all()


# ---------------------------------------------------------------- the rule


def test_auto_reads_directly_past_half_the_memory():
    assert row_reads.choose(row_reads.AUTO, 501, 1000) == row_reads.DIRECT
    assert row_reads.choose(row_reads.AUTO, 500, 1000) == row_reads.MAPPED
    assert row_reads.choose(row_reads.MAPPED, 10**15, 1000) == row_reads.MAPPED
    assert row_reads.choose(row_reads.DIRECT, 0, 1000) == row_reads.DIRECT
    with pytest.raises(ValueError, match="--rerank-reads must be one of auto, mapped, direct"):
        row_reads.choose("sideways", 0, 1000)


def test_the_loader_weighs_a_models_segments_against_the_memory_limit(tmp_path, monkeypatch):
    folder = tmp_path / "segments"
    folder.mkdir()
    for name, size in (("a", 3000), ("b", 1000)):
        (folder / f"{name}.npy").write_bytes(b"\0" * size)
    auto = BuildLoader(None, str(tmp_path), False)
    monkeypatch.setattr(loader_module, "memory_available", lambda: 7999)      # a cgroup's memory.max
    assert auto._reads(str(folder), ["a", "b"]) == row_reads.DIRECT
    monkeypatch.setattr(loader_module, "memory_available", lambda: 8000)
    assert auto._reads(str(folder), ["a", "b"]) == row_reads.MAPPED
    assert auto._reads(None, []) == row_reads.MAPPED                          # no segments: held vectors
    monkeypatch.setattr(loader_module, "memory_available", lambda: 1)
    assert BuildLoader(None, str(tmp_path), False, row_reads.MAPPED)._reads(str(folder), ["a"]) == row_reads.MAPPED
