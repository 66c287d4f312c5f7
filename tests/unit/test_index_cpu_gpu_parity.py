"""The same filtered, crowded queries give the same neighbors on the CPU and,
where a GPU is visible, on the GPU. The CPU half always runs against a numpy
oracle; the GPU half runs where faiss sees a GPU (the lent GPU machine)."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from explaind.server.index.config import search_config_from_json
from explaind.server.index.example_index import ExampleIndex
from explaind.server.index.restricts import Namespace

N, D, K = 6000, 32, 10


def _data():
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(N, D)).astype(np.float32)
    colors = np.array(["red", "green", "blue"])[rng.integers(0, 3, N)]
    restricts = [[Namespace("color", (c,))] for c in colors]
    tags = [f"t{t}" for t in rng.integers(0, 50, N)]
    queries = rng.normal(size=(8, D)).astype(np.float32)
    return vectors, colors, restricts, tags, queries


def _oracle(vectors, colors, tags, query, allow, crowding):
    order = np.argsort(((vectors - query) ** 2).sum(1), kind="stable")
    out, seen = [], {}
    for j in order:
        if colors[j] != allow:
            continue
        if crowding and seen.get(tags[j], 0) >= crowding:
            continue
        seen[tags[j]] = seen.get(tags[j], 0) + 1
        out.append(str(j))
        if len(out) == K:
            return out
    return out


@pytest.mark.parametrize("algorithm", [{"bruteForceConfig": {}},
                                       {"treeAhConfig": {"leafNodeEmbeddingCount": 100,
                                                         "leafNodesToSearchPercent": 100}}])
def test_cpu_matches_oracle_and_gpu_matches_cpu(algorithm):
    vectors, colors, restricts, tags, queries = _data()
    config = search_config_from_json({"config": {"dimensions": D, "distanceMeasureType": "SQUARED_L2_DISTANCE",
                                                 "algorithmConfig": algorithm}}, K, "config")
    ids = [str(i) for i in range(N)]
    query_restricts = [[Namespace("color", ("red",))]] * len(queries)
    cpu = ExampleIndex.build(vectors, ids, restricts, tags, config, use_gpu=False)
    assert cpu.info.device == "cpu"
    cpu_results = cpu.search(queries, K, restricts=query_restricts, crowding_count=2)
    for q, found in zip(queries, cpu_results):
        assert [i for i, _, _ in found] == _oracle(vectors, colors, tags, q, "red", 2)
    if faiss.get_num_gpus() == 0:
        return   # no GPU visible: the CPU half above is the whole test here
    gpu = ExampleIndex.build(vectors, ids, restricts, tags, config, use_gpu=True)
    assert gpu.info.device == "gpu"
    gpu_results = gpu.search(queries, K, restricts=query_restricts, crowding_count=2)
    for c, g in zip(cpu_results, gpu_results):
        assert [i for i, _, _ in g] == [i for i, _, _ in c]
        np.testing.assert_allclose([d for _, d, _ in g], [d for _, d, _ in c], rtol=1e-4, atol=1e-4)
