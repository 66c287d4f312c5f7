"""A treeAh index knows its recall: what its build measures is what a user
meets (against the numpy oracle), a starved approximateNeighborsCount gets a
warning naming the setting to raise and a good one none, open settings are
picked to reach each preset's floor on data of several shapes while given
ones are used as given, an update measures again, and a query against a
segment evicted from the page cache reads little more than its candidate
rows."""
import os
import sys

import numpy as np
import pytest

from explaind.server.index import ExampleIndex, SearchConfig, search_config_from_json, search_config_from_presets
from explaind.server.index.attributes import AttributesBuilder, of_lists
from explaind.server.index.example_index import Additions
from explaind.server.index.recall import query_count, sample_positions
from explaind.server.index.restricts import Namespace
from explaind.server.index.search_params import SearchParams
from explaind.server.errors import InvalidArgument
from tests import oracles, page_cache

K = 10


def clustered(n: int, d: int, seed: int, clusters: int = 40, spread: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(100 + d).standard_normal((clusters, d)) * spread
    return (centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, d))).astype(np.float32)


def low_dimensional(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(200 + d).standard_normal((d, 6)))[0]
    return (rng.standard_normal((n, 6)) @ basis.T + 0.05 * rng.standard_normal((n, d))).astype(np.float32)


def relu(n: int, d: int, seed: int) -> np.ndarray:
    weights = np.random.default_rng(300 + d).standard_normal((16, d)) / 4
    return np.maximum(clustered(n, 16, seed, clusters=30) @ weights, 0).astype(np.float32)


def tree_ah(d: int, **kw) -> SearchConfig:
    given = dict(leaf_node_embedding_count=500, leaf_nodes_to_search_percent=5, neighbor_count=K)
    return SearchConfig(dimensions=d, distance="SQUARED_L2_DISTANCE", feature_norm="NONE", algorithm="tree_ah",
                        **{**given, **kw})


def user_recall(index: ExampleIndex, x: np.ndarray) -> float:
    """What the build of a model re-ranking 10 candidates for its 10 neighbors
    should have measured, found independently: the same held-out examples
    searched through the public API for 11 neighbors (which re-ranks
    ceil(10 x 11 / 10) = 11 candidates: the example itself and 10 others),
    itself dropped, against the oracle's 10 nearest other examples."""
    positions = sample_positions(np.arange(len(x)), query_count(len(x), x.shape[1]))
    found, _ = index.search_arrays(x[positions], K + 1, params=SearchParams(approximate_neighbors_count=10))
    truth, _ = oracles.nearest(x, x[positions], K + 1, "SQUARED_L2_DISTANCE")
    hits = []
    for own, f, t in zip(positions, found, truth):
        f, t = [p for p in f if p != own][:K], [p for p in t if p != own][:K]
        hits.append(len(set(f) & set(t)) / K)
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def data():
    return clustered(8000, 32, seed=1, clusters=20, spread=0.8)         # overlapping clusters: codes matter


def test_the_measured_recall_is_what_the_oracle_finds(data):
    x = data
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], None, None,
                               tree_ah(32, approximate_neighbors_count=10))
    report = index.info.recall
    assert report is not None and report.neighbor_count == K and report.queries == query_count(len(x), 32)
    assert index.info.tuning is None                                   # nothing was left open
    assert report.recall == pytest.approx(user_recall(index, x), abs=0.01)
    assert report.recall < 0.9                                         # 10 candidates for 10 neighbors: starved


def test_a_starved_candidate_count_warns_naming_the_setting_and_a_good_one_does_not(data):
    x = data
    ids = [str(i) for i in range(len(x))]
    starved = ExampleIndex.build(x, ids, None, None, tree_ah(32, approximate_neighbors_count=10)).info.recall
    warning = starved.warning()
    assert starved.below_floor and warning and "approximateNeighborsCount 10 ->" in warning
    assert f"below the {starved.floor:g} floor" in warning
    raised = [a for a in starved.alternatives if a.setting == "approximateNeighborsCount"]
    assert raised and all(a.value > 10 and a.recall > starved.recall for a in raised)
    wider = [a for a in starved.alternatives if a.setting == "leafNodesToSearchPercent"]
    assert wider and all(a.now == 5 and a.value > 5 for a in wider)     # the leaves were given too
    assert max(a.recall for a in starved.alternatives) >= starved.floor   # one of them reaches the floor
    # What an alternative claims is what that setting measures.
    claim = raised[0]
    again = ExampleIndex.build(x, ids, None, None, tree_ah(32, approximate_neighbors_count=int(claim.value)))
    assert again.info.recall.recall == pytest.approx(claim.recall, abs=0.02)
    good = ExampleIndex.build(x, ids, None, None, tree_ah(32, approximate_neighbors_count=200,
                                                          leaf_nodes_to_search_percent=25)).info.recall
    assert not good.below_floor and good.warning() is None and good.alternatives == ()


def test_given_settings_are_used_as_given_and_open_ones_are_picked(data):
    x = data
    ids = [str(i) for i in range(len(x))]
    given = search_config_from_json({"dimensions": 32, "distanceMeasureType": "SQUARED_L2_DISTANCE",
                                     "approximateNeighborsCount": 37, "algorithmConfig": {"treeAhConfig": {
                                         "leafNodeEmbeddingCount": 500, "leafNodesToSearchPercent": 25}}}, K, "c")
    assert given.open_settings == frozenset()
    index = ExampleIndex.build(x, ids, None, None, given)
    assert index.info.tuning is None and index.info.nprobe == 4 and index.config.approximate_neighbors_count == 37
    assert index.info.index_type == "IVF16,PQ32x4fs"                   # the most faithful codes
    open_config = search_config_from_json({"dimensions": 32, "distanceMeasureType": "SQUARED_L2_DISTANCE"}, K, "c")
    assert open_config.open_settings == {"leaves", "candidates"}
    tuned = ExampleIndex.build(x, ids, None, None, open_config)
    t = tuned.info.tuning
    assert t is not None and t.target == 0.99 and t.leaves == tuned.info.nprobe
    assert tuned.config.approximate_neighbors_count == t.candidates and t.code_shape in tuned.info.index_type
    assert "held-out examples" in t.reason and tuned.info.recall.recall >= 0.98


def test_an_update_measures_again(data, tmp_path):
    x = data
    base = ExampleIndex.build(x[:6000], [str(i) for i in range(6000)], None, None,
                              tree_ah(32, approximate_neighbors_count=10))
    (tmp_path / "base").mkdir()
    base.save(str(tmp_path / "base"))
    updated = base.updated(Additions(x[6000:], [str(i) for i in range(6000, len(x))], [[]] * 2000, [None] * 2000),
                           np.arange(0, 6000, 3))
    report = updated.info.recall
    assert report is not None and report is not base.info.recall
    assert report.queries == query_count(updated.live_count, 32) and report.below_floor
    (tmp_path / "updated").mkdir()
    updated.save(str(tmp_path / "updated"), str(tmp_path / "base"), segment_name="update")
    loaded = ExampleIndex.load(str(tmp_path / "updated"), segments_folder=str(tmp_path / "base"))
    assert loaded.info.recall == report                                # saved with the build
    # A retrain stages the vectors beside its new segment, then measures as a build does.
    segment = str(tmp_path / "retrained.npy")
    retrained = loaded.updated(None, np.array([], np.int64), retrain=True, segment_path=segment)
    assert os.listdir(tmp_path).count("retrained.npy") == 1 and not os.path.exists(segment + ".rebuild")
    assert retrained.info.recall.queries > 0 and retrained.size == updated.live_count
    np.testing.assert_array_equal(retrained.embeddings_of(np.array([0, 4000])), x[[1, 6000]])


PRESET_SHAPES = {"clustered": lambda n, s: clustered(n, 32, s, clusters=30, spread=1.5),
                 "low dimension": lambda n, s: low_dimensional(n, 32, s),
                 "relu": lambda n, s: relu(n, 32, s)}


@pytest.mark.slow
@pytest.mark.parametrize("shape", PRESET_SHAPES)
def test_the_presets_defaults_reach_their_floors(shape):
    """On fresh queries of the data's own distribution (the oracle's truth),
    within the noise of 300 queries."""
    make = PRESET_SHAPES[shape]
    x, q = make(12_000, 7), make(300, 8)
    truth, _ = oracles.nearest(x, q, K, "SQUARED_L2_DISTANCE")
    for preset, floor, noise in (("PRECISE", 0.99, 0.004), ("FAST", 0.90, 0.015)):
        index = ExampleIndex.build(x, [str(i) for i in range(len(x))], None, None,
                                   search_config_from_presets(preset, "TABULAR", K))
        assert index.info.tuning is not None and index.info.recall.recall >= floor, (shape, preset, index.info)
        found, _ = index.search_arrays(q, K)
        got = np.mean([len(set(f) & set(t)) / K for f, t in zip(found.tolist(), truth.tolist())])
        assert got >= floor - noise, (shape, preset, got, index.info.tuning)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/io"),
                    reason="page-cache eviction and task I/O accounting are Linux's")
def test_a_query_on_an_evicted_segment_reads_at_most_four_times_its_candidate_rows(tmp_path):
    d, candidates = 128, 100
    x = clustered(20_000, d, seed=3, clusters=100, spread=1.0)
    config = tree_ah(d, approximate_neighbors_count=candidates)
    ExampleIndex.build(x, [str(i) for i in range(len(x))], None, None, config).save(str(tmp_path))
    index = ExampleIndex.load(str(tmp_path))
    (segment,) = index.contents.vectors.segments
    path = os.path.join(str(tmp_path), f"{index.segment_names[0]}.npy")
    q = clustered(30, d, seed=4, clusters=100, spread=1.0)
    reads = []
    for row in q:
        page_cache.evict([path], [segment])
        before = page_cache.read_bytes()
        index.search_arrays(row[None], K)
        reads.append(page_cache.read_bytes() - before)
    assert min(reads) > 0                                   # the segment was out of the cache
    assert np.mean(reads) <= 4 * candidates * d * 4, reads


def test_attributes_gathered_in_batches_are_the_lists_compact_forms():
    builder = AttributesBuilder()
    builder.add(["0", "1"], [[], [Namespace("c", ("red",), ("blue",))]], [None, "t"])
    assert builder.result().ids.implicit                    # ids that are their positions cost nothing
    builder.add(["x", "y"], [[Namespace("c", ("red",))], []], ["t", "u"])
    got = builder.result()
    assert list(got.ids) == ["0", "1", "x", "y"] and got.tags() == [None, "t", "t", "u"]
    assert got.restricts() == [[], [Namespace("c", ("red",), ("blue",))], [Namespace("c", ("red",), ())], []]
    assert got.postings.admissible([Namespace("c", ("red",))]).tolist() == [False, True, True, False]
    with pytest.raises(InvalidArgument, match="duplicate example id 'x' \\(examples 2 and 4\\)") as e:
        builder.add(["x"], [[]], [None])
        builder.result("uris")
    assert e.value.field == "uris"
    assert list(of_lists(["a", "b"], None, None).ids) == ["a", "b"]
