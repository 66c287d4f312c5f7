"""The same filtered, crowded queries give the oracle's neighbors on the CPU and
the CPU's neighbors on the GPU, for every distance measure, flat and IVF, in
every selectivity band of index/filtering.py. The CPU half always runs; the
GPU half runs where FAISS sees a GPU (bench/gpu_check.sh on the lent GPU
machine runs this file there)."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from explaind.server.index.config import search_config_from_json
from explaind.server.index.example_index import ExampleIndex
from explaind.server.index.restricts import Namespace
from tests import oracles

# Slow tier (pytest -m 'not slow' leaves it out): IVF indexes over every distance, checked against an oracle.
pytestmark = pytest.mark.slow

N, D, K = 30_000, 32, 10
# Token -> rows holding it. On the GPU: "rare" is a subset scan (<= 2048 rows),
# "mid" (10%) the selector, "wide" (30%) the post-filter; "all" is unfiltered.
BANDS = {"rare": 1_000, "mid": 3_000, "wide": 9_000, "all": N}
DISTANCES = ["DOT_PRODUCT_DISTANCE", "SQUARED_L2_DISTANCE", "COSINE_DISTANCE", "L1_DISTANCE"]
ALGORITHMS = {"flat": {"bruteForceConfig": {}},
              # every list probed and every candidate re-ranked: exact, so comparable with the oracle
              "ivf": {"treeAhConfig": {"leafNodeEmbeddingCount": 500, "leafNodesToSearchPercent": 100}}}
EXACT_RERANK = {"flat": 0, "ivf": N}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(64, D)) * 3
    vectors = (centers[rng.integers(0, 64, N)] + rng.normal(size=(N, D))).astype(np.float32)
    order = rng.permutation(N)
    held = {token: set(order[:rows].tolist()) for token, rows in BANDS.items()}
    restricts = [[Namespace("band", tuple(t for t in BANDS if i in held[t]))] for i in range(N)]
    tags = [f"t{t}" for t in rng.integers(0, 40, N)]
    queries = (centers[rng.integers(0, 64, 6)] + rng.normal(size=(6, D))).astype(np.float32)
    masks = {token: np.isin(np.arange(N), list(rows)) for token, rows in held.items()}
    return vectors, restricts, tags, queries, masks


def _oracle(vectors, tags, query, distance, admissible, crowding):
    dist = oracles.distances(query, vectors, distance)[0]
    return oracles.crowded_search(dist, admissible, tags, K, crowding)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("distance", DISTANCES)
def test_cpu_matches_oracle_and_gpu_matches_cpu(data, distance, algorithm):
    vectors, restricts, tags, queries, masks = data
    config = search_config_from_json({"config": {"dimensions": D, "distanceMeasureType": distance,
                                                 "approximateNeighborsCount": EXACT_RERANK[algorithm],
                                                 "algorithmConfig": ALGORITHMS[algorithm]}}, K, "config")
    ids = [str(i) for i in range(N)]
    cpu = ExampleIndex.build(vectors, ids, restricts, tags, config, use_gpu=False)
    assert cpu.info.device == "cpu"
    gpu = None
    if faiss.get_num_gpus() > 0:
        gpu = ExampleIndex.build(vectors, ids, restricts, tags, config, use_gpu=True)
        # L1 has no FAISS GPU kernel: it stays on the CPU by design.
        assert gpu.info.device == ("cpu" if distance == "L1_DISTANCE" else "gpu")
    for token in BANDS:
        for crowding in (0, 2):
            query_restricts = [[Namespace("band", (token,))]] * len(queries)
            found = cpu.search(queries, K, restricts=query_restricts, crowding_count=crowding)
            for q, neighbors in zip(queries, found):
                assert [n.position for n in neighbors] == \
                    _oracle(vectors, tags, q, distance, masks[token], crowding), (token, crowding)
            if gpu is None:
                continue   # no GPU visible: the CPU half above is the whole test here
            violations = []
            on_gpu = gpu.search(queries, K, restricts=query_restricts, crowding_count=crowding,
                                on_filter_violation=violations.append)
            assert violations == [], "the GPU build ignored a selector (not a cuVS build?)"
            for c, g in zip(found, on_gpu):
                assert [n.position for n in g] == [n.position for n in c], (token, crowding)
                np.testing.assert_allclose([n.distance for n in g], [n.distance for n in c], rtol=1e-4, atol=1e-4)
