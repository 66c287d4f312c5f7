"""ExampleIndex against the numpy brute-force oracle (tests/oracles.py)."""
import os
import threading
from unittest import mock

import numpy as np
import pytest

from explaind.server.errors import DimensionMismatch, InvalidArgument, attach_fields
from explaind.server.index import ExampleIndex, Namespace, SearchConfig
from explaind.server.index.search_params import FilterPolicy, SearchParams
from tests import oracles

DISTANCES = ["DOT_PRODUCT_DISTANCE", "SQUARED_L2_DISTANCE", "L1_DISTANCE", "COSINE_DISTANCE"]
NORMS = ["NONE", "UNIT_L2_NORM"]


def assert_matches_oracle(got, dist_row, k, admissible=None, tol=1e-4):
    """got is a nearest admissible set: right count, each distance is the true
    one, and the sorted distances equal the oracle's k smallest (ties allowed)."""
    cand = np.arange(len(dist_row)) if admissible is None else np.flatnonzero(admissible)
    expected = np.sort(dist_row[cand])[:k]
    assert len(got) == len(expected)
    scale = tol * (1 + np.abs(dist_row).max())
    for _, d, pos in got:
        assert pos in set(cand.tolist())
        assert abs(d - dist_row[pos]) <= scale
    np.testing.assert_allclose([d for _, d, _ in got], expected, atol=scale)


def cfg(distance="SQUARED_L2_DISTANCE", norm="NONE", algorithm="brute_force", d=16, **kw):
    return SearchConfig(dimensions=d, distance=distance, feature_norm=norm, algorithm=algorithm, **kw)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return rng.standard_normal((3000, 16)).astype(np.float32), rng.standard_normal((20, 16)).astype(np.float32)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("distance", DISTANCES)
def test_exact_distances_match_oracle(data, distance, norm):
    x, q = data
    index = ExampleIndex.build(x, [f"id{i}" for i in range(len(x))], None, None, cfg(distance, norm))
    assert index.info.index_type == "Flat"
    got = index.search(q, 10)
    dist = oracles.distances(q, x, distance, norm)
    for row in range(len(q)):
        assert_matches_oracle(got[row], dist[row], 10)
        assert [n.id for n in got[row]] == [f"id{n.position}" for n in got[row]]
        ds = [d for _, d, _ in got[row]]
        assert ds == sorted(ds)


@pytest.mark.parametrize("strategy", ["subset", "selector", "postfilter"])
@pytest.mark.parametrize("distance", DISTANCES)
def test_filtered_strategies_match_oracle(data, distance, strategy):
    x, q = data
    rng = np.random.default_rng(1)
    colors = rng.choice(["red", "blue"], size=len(x), p=[0.3, 0.7])
    restricts = [[Namespace("color", (c,))] for c in colors]
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], restricts, None, cfg(distance))
    got = index.search(q, 10, restricts=[[Namespace("color", ("red",))]] * len(q), params=forced(strategy))
    dist = oracles.distances(q, x, distance, "NONE")
    for row in range(len(q)):
        assert_matches_oracle(got[row], dist[row], 10, admissible=colors == "red")


def forced(strategy):
    """Search parameters that pin one filtering strategy."""
    return SearchParams(filter_policy=FilterPolicy(force=strategy))


def test_one_admissible_among_200k():
    n = 200_000
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    restricts = [[] for _ in range(n)]
    restricts[123_457] = [Namespace("owner", ("alice",))]
    index = ExampleIndex.build(x, [str(i) for i in range(n)], restricts, None, cfg(d=8))
    q = rng.standard_normal((3, 8)).astype(np.float32)
    got = index.search(q, 10, restricts=[[Namespace("owner", ("alice",))]] * 3)
    assert [[n.position for n in row] for row in got] == [[123_457]] * 3
    assert got[0][0][0] == "123457"
    assert got[0][0][1] == pytest.approx(float(((q[0] - x[123_457]) ** 2).sum()), rel=1e-4)
    assert index.search(q[:1], 10, restricts=[[Namespace("owner", ("bob",))]]) == [[]]
    assert index.search(q[:1], 10, restricts=[[Namespace("owner", ("alice",), ("alice",))]]) == [[]]


def test_count_is_min_of_k_and_admissible(data):
    x, q = data
    restricts = [[Namespace("g", ("few",))] if i % 500 == 0 else [] for i in range(len(x))]
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], restricts, None, cfg())
    got = index.search(q, 10, restricts=[[Namespace("g", ("few",))]] * len(q))
    assert all(len(row) == 6 for row in got)
    assert len(index.search(q[:1], 5000)[0]) == len(x)
    assert index.search(q[:2], 0) == [[], []]


def test_ivf_selector_widens_nprobe_for_far_admissible():
    """Admissible examples all in one far cluster: the probed lists hold none,
    the selector must probe more lists and still return min(k, m)."""
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((50, 16)).astype(np.float32) * 10
    labels = rng.integers(0, 50, 20_000)
    x = centers[labels] + rng.standard_normal((20_000, 16)).astype(np.float32)
    far = labels == 0
    restricts = [[Namespace("c", ("far",))] if f else [] for f in far]
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], restricts, None,
                               cfg(algorithm="tree_ah", leaf_node_embedding_count=500,
                                   leaf_nodes_to_search_percent=5))
    assert index.info.index_type == "IVF40,PQ16x4fs" and index.info.nprobe == 2
    q = centers[1:4] + 0.1
    got = index.search(q, 10, restricts=[[Namespace("c", ("far",))]] * 3, params=forced("selector"))
    for row in got:
        assert len(row) == 10 and all(far[n.position] for n in row)


def test_crowding_basic(data):
    x, q = data
    tags = [f"t{i % 7}" if i % 3 else None for i in range(len(x))]
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], None, tags, cfg())
    for c in (1, 2):
        got = index.search(q, 20, crowding_count=c)
        for row in got:
            assert len(row) == 20
            counts = {}
            for _, _, p in row:
                if tags[p]:
                    counts[tags[p]] = counts.get(tags[p], 0) + 1
            assert max(counts.values()) <= c


def test_save_load_round_trip(tmp_path, data):
    x, q = data
    rng = np.random.default_rng(2)
    restricts = [[Namespace("a", (str(rng.integers(3)),), ("9",) if i % 5 == 0 else ())] for i in range(len(x))]
    tags = [f"t{rng.integers(20)}" if i % 2 else None for i in range(len(x))]
    for algo, n in (("brute_force", len(x)), ("tree_ah", len(x))):
        c = cfg("COSINE_DISTANCE", algorithm=algo, leaf_node_embedding_count=100)
        with mock.patch("explaind.server.index.config.EXACT_BELOW", 1000):
            index = ExampleIndex.build(x[:n], [f"x{i}" for i in range(n)], restricts, tags, c)
        folder = tmp_path / algo
        folder.mkdir()
        index.save(str(folder))
        assert not any(f.endswith((".pkl", ".pickle")) for f in os.listdir(folder))
        loaded = ExampleIndex.load(str(folder))
        assert (loaded.size, loaded.dimensions, loaded.config, loaded.info) == (
            index.size, index.dimensions, index.config, index.info)
        queries = [[Namespace("a", ("1",))], [], [Namespace("a", (), ("0",))]] * 7
        for kwargs in ({}, {"restricts": queries[:len(q)]}, {"crowding_count": 1}):
            assert loaded.search(q, 10, **kwargs) == index.search(q, 10, **kwargs)
        np.testing.assert_array_equal(loaded.embeddings_of(np.array([4, 1])), x[[4, 1]])
    assert (index.info.index_type, index.info.nprobe) == ("IVF30,PQ16x4fs", 3)


def test_embeddings_of_returns_originals(data):
    x, _ = data
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], None, None,
                               cfg("COSINE_DISTANCE", "UNIT_L2_NORM"))
    np.testing.assert_array_equal(index.embeddings_of(np.array([0, 5, 2])), x[[0, 5, 2]])


def test_duplicate_ids():
    with pytest.raises(InvalidArgument) as e:
        ExampleIndex.build(np.zeros((3, 4), np.float32), ["a", "b", "a"], None, None, cfg(d=4))
    assert "'a'" in e.value.message and e.value.field is None     # the caller names the field


def test_dimension_mismatch_is_its_own_error_and_the_caller_names_the_field():
    with pytest.raises(DimensionMismatch) as e:
        ExampleIndex.build(np.zeros((3, 5), np.float32), ["a", "b", "c"], None, None, cfg(d=4))
    assert e.value.field is None and "4" in e.value.message and "5" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        with attach_fields("examples", {DimensionMismatch: "config.dimensions"}):
            ExampleIndex.build(np.zeros((3, 5), np.float32), ["a", "b", "c"], None, None, cfg(d=4))
    assert e.value.field == "config.dimensions"
    with pytest.raises(InvalidArgument) as e:
        with attach_fields("examples", {DimensionMismatch: "config.dimensions"}):
            ExampleIndex.build(np.zeros((3, 4), np.float32), ["a", "b", "a"], None, None, cfg(d=4))
    assert e.value.field == "examples"


def test_presets_fill_dimensions(data):
    x, _ = data
    from explaind.server.index import search_config_from_presets
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], None, None,
                               search_config_from_presets("FAST", "IMAGE", 10))
    assert index.config.dimensions == 16 and index.dimensions == 16


def test_gpu_request_without_gpu_stays_on_cpu(data):
    x, q = data
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], None, None, cfg(), use_gpu=True)
    assert index.info.device == "cpu"
    assert len(index.search(q, 3)[0]) == 3


def test_concurrent_searches_match_sequential(data):
    x, q = data
    restricts = [[Namespace("p", (str(i % 4),))] for i in range(len(x))]
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], restricts, None, cfg())
    queries = [[[Namespace("p", (str(r % 4),))] for r in range(len(q))], None]
    expected = [index.search(q, 10, restricts=r, crowding_count=0) for r in queries]
    errors, results = [], []

    def work(j):
        try:
            for _ in range(10):
                results.append((j % 2, index.search(q, 10, restricts=queries[j % 2])))
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == expected[j] for j, r in results)


def test_crowding_widens_until_every_candidate_was_seen(data):
    """One tag on almost everything: the answer needs candidates far down the list."""
    x, q = data
    tags = [None if i % 100 == 0 else "same" for i in range(len(x))]
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], None, tags, cfg())
    dist = oracles.distances(q, x, "SQUARED_L2_DISTANCE", "NONE")
    untagged = np.arange(0, len(x), 100)
    for row, got in enumerate(index.search(q, 10, crowding_count=1)):
        nearest_tagged = min((p for p in range(len(x)) if p % 100), key=lambda p: dist[row, p])
        candidates = np.r_[untagged, nearest_tagged]
        want = candidates[np.argsort(dist[row, candidates], kind="stable")][:10]
        assert [n.position for n in got] == want.tolist()


def test_l1_blocks(data):
    from explaind.server.index import distances
    x, q = data
    c = cfg("L1_DISTANCE")
    with mock.patch.object(distances, "L1_BLOCK", 100):
        got = distances.exact_distances(q[:3], x[:50], c)
    np.testing.assert_allclose(got, oracles.distances(q[:3], x[:50], "L1_DISTANCE", "NONE"), rtol=1e-5)


@pytest.mark.parametrize("strategy", ["subset", "selector", "postfilter"])
@pytest.mark.parametrize("filtered", [False, True])
def test_dot_product_of_a_zero_query_is_plain_zero(data, strategy, filtered):
    """Distance is the negated product: a zero product must come back as 0, not -0
    (which clients print as "-0")."""
    x, _ = data
    restricts = [[Namespace("color", ("red",))] if i % 3 == 0 else [] for i in range(len(x))]
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], restricts, None, cfg("DOT_PRODUCT_DISTANCE"))
    query = [[Namespace("color", ("red",))]] if filtered else None
    got = index.search(np.zeros((1, 16), np.float32), 5, restricts=query, params=forced(strategy))
    single = index.search(np.zeros((2, 16), np.float32), 5, restricts=query * 2 if query else None,
                          params=forced(strategy))
    for row in got + single:
        distances = np.array([d for _, d, _ in row])
        assert len(distances) == 5 and np.all(distances == 0) and not np.signbit(distances).any()


@pytest.mark.parametrize("distance, copies", [("DOT_PRODUCT_DISTANCE", 1), ("SQUARED_L2_DISTANCE", 1),
                                              ("COSINE_DISTANCE", 2)])
def test_a_flat_index_holds_each_vector_once_more_only_when_it_normalizes(data, tmp_path, distance, copies):
    """The flat index's own storage serves the BLAS scans and the returned embeddings;
    only a normalizing measure keeps the originals beside it. Saved and loaded alike."""
    x, q = data
    built = ExampleIndex.build(x, [str(i) for i in range(len(x))], None, None, cfg(distance))
    built.save(str(tmp_path))
    assert (tmp_path / "embeddings.npy").exists() == (copies == 2)    # else index.faiss holds them
    loaded = ExampleIndex.load(str(tmp_path))
    for index in (built, loaded):
        assert index.info.index_bytes - index.attribute_bytes == copies * x.nbytes
        np.testing.assert_array_equal(index.embeddings_of(np.array([0, 5, 2999])), x[[0, 5, 2999]])
        got = index.search(q[:1], 5)          # the single-query BLAS scan reads the shared storage
        dist = oracles.distances(q[:1], x, distance, "NONE")
        assert_matches_oracle(got[0], dist[0], 5)


def test_asking_for_every_example_of_a_compressed_index_returns_every_one():
    # FAISS's fast-scan codes drop this inner-product case's farthest example
    # (found by test_index_properties): a call asking for all is answered exactly.
    from explaind.server.index.config import IndexPlan
    n = 31
    rng = np.random.default_rng(67791942)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    q = rng.standard_normal((1, 4)).astype(np.float32)
    c = cfg("DOT_PRODUCT_DISTANCE", "UNIT_L2_NORM", "tree_ah", d=4, leaf_node_embedding_count=8,
            leaf_nodes_to_search_percent=100, approximate_neighbors_count=64)
    index = ExampleIndex.build(x, [str(i) for i in range(n)], None, None, c, plan=IndexPlan(4, 4, 2))
    assert index.kind.compressed
    want_pos, want_dist = oracles.nearest(x, q, n, "DOT_PRODUCT_DISTANCE", unit_norm=True)
    for k in (n, n + 5):
        got = index.search(q, k)[0]
        assert [g.position for g in got] == want_pos[0].tolist()
        np.testing.assert_allclose([g.distance for g in got], want_dist[0], rtol=1e-5, atol=1e-5)
