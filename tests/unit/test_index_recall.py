"""tree_ah and presets: recall@10 against numpy brute force on a data set large
enough for a real IVF index (Gaussian mixture, fixed seed)."""
import time

import numpy as np
import pytest

from explaind.server.index import ExampleIndex, Namespace, SearchConfig, search_config_from_presets
from tests import oracles

# Slow tier (pytest -m 'not slow' leaves it out): large indexes trained to their recall floors (tens of seconds each).
pytestmark = pytest.mark.slow

N, D, CLUSTERS, QUERIES, K = 30_000, 32, 100, 200, 10


def mixture(seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CLUSTERS, D)).astype(np.float32) * 1.5  # overlapping: FAST not trivially exact
    labels = rng.integers(0, CLUSTERS, N + QUERIES)
    points = centers[labels] + rng.standard_normal((N + QUERIES, D)).astype(np.float32)
    return points[:N], points[N:]


@pytest.fixture(scope="module")
def data():
    x, q = mixture()
    return x, q, [str(i) for i in range(N)]


def brute_force(q, x, cosine):
    return oracles.nearest(x, q, K, "COSINE_DISTANCE" if cosine else "SQUARED_L2_DISTANCE")[0]


def recall(results, truth):
    return np.mean([len({p for _, _, p in row} & set(t.tolist())) / K for row, t in zip(results, truth)])


@pytest.mark.parametrize("modality", ["TABULAR", "IMAGE"])
def test_presets_recall(data, modality):
    x, q, ids = data
    truth = brute_force(q, x, cosine=modality == "IMAGE")
    measured = {}
    for preset, floor in (("PRECISE", 0.99), ("FAST", 0.90)):
        index = ExampleIndex.build(x, ids, None, None, search_config_from_presets(preset, modality, K))
        # N // 500 lists of 4-bit codes (their shape, the leaves and candidates picked by the build)
        assert f"IVF{N // 500}," in index.info.index_type and index.info.index_type.endswith("x4fs")
        t = time.perf_counter()
        got = index.search(q, K)
        tuning = index.info.tuning
        measured[preset] = (recall(got, truth), time.perf_counter() - t, tuning.leaves, tuning.candidates)
        assert measured[preset][0] >= floor, (preset, measured)
    # FAST's settings cost no more than PRECISE's (timings on a shared machine are too noisy to assert)
    assert measured["FAST"][2] <= measured["PRECISE"][2] and measured["FAST"][3] <= measured["PRECISE"][3]
    print(measured)


def test_tree_ah_config_recall(data):
    x, q, ids = data
    truth = brute_force(q, x, cosine=False)
    cfg = SearchConfig(dimensions=D, distance="SQUARED_L2_DISTANCE", feature_norm="NONE", algorithm="tree_ah",
                       leaf_node_embedding_count=1000, leaf_nodes_to_search_percent=100)
    index = ExampleIndex.build(x, ids, None, None, cfg)
    assert (index.info.index_type, index.info.nlist, index.info.nprobe) == ("IVF30,PQ32x4fs", 30, 30)
    assert recall(index.search(q, K), truth) == 1.0  # every list probed: exact


def test_ivf_filtered_recall(data):
    """A 10% filter on IVF (PRECISE) keeps recall against filtered brute force."""
    x, q, ids = data
    keep = np.arange(N) % 10 == 3
    restricts = [[Namespace("s", ("in",))] if k else [] for k in keep]
    index = ExampleIndex.build(x, ids, restricts, None, search_config_from_presets("PRECISE", "TABULAR", K))
    got = index.search(q, K, restricts=[[Namespace("s", ("in",))]] * len(q))
    sub = np.flatnonzero(keep)
    truth = sub[brute_force(q, x[sub], cosine=False)]
    assert all(len(row) == K and all(keep[p] for _, _, p in row) for row in got)
    assert recall(got, truth) >= 0.99


@pytest.mark.parametrize("fraction", [0.17, 0.5])   # the IVF bitmap-selector and over-fetch strategies
@pytest.mark.parametrize("preset,floor", [("PRECISE", 0.99), ("FAST", 0.90)])
def test_ivf_filtered_recall_keeps_the_unfiltered_targets(data, fraction, preset, floor):
    x, q, ids = data
    keep = np.random.default_rng(3).random(N) < fraction
    restricts = [[Namespace("s", ("in",))] if k else [] for k in keep]
    index = ExampleIndex.build(x, ids, restricts, None, search_config_from_presets(preset, "TABULAR", K))
    assert index.info.index_type.startswith("IVF")
    got = index.search(q, K, restricts=[[Namespace("s", ("in",))]] * len(q))
    sub = np.flatnonzero(keep)
    truth = sub[brute_force(q, x[sub], cosine=False)]
    assert all(len(row) == K and all(keep[p] for _, _, p in row) for row in got)
    assert recall(got, truth) >= floor, (preset, fraction, recall(got, truth))
