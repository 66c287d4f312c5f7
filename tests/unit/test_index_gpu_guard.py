"""The GPU code path, run on a CPU-only machine with FAISS's GPU entry points
faked (the "GPU index" is a CPU clone): placement, routing and fallbacks."""
from unittest import mock

import faiss
import numpy as np
import pytest

from explaind.server.index import ExampleIndex, Namespace, SearchConfig
from explaind.server.index import backend


class FakeGpuIndex:
    def __init__(self, index):
        self.inner = faiss.clone_index(index)
        self.calls = []

    def search(self, x, k, params=None):
        self.calls.append(k)
        return self.inner.search(x, k, params=params)


@pytest.fixture
def fake_gpu():
    made = []

    def to_gpu(res, device, index):
        made.append(FakeGpuIndex(index))
        return made[-1]

    with mock.patch.object(faiss, "StandardGpuResources", object, create=True), \
            mock.patch.object(faiss, "index_cpu_to_gpu", to_gpu, create=True), \
            mock.patch.object(faiss, "get_num_gpus", lambda: 1):
        yield made


def build(distance, use_gpu=None, n=3000):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    restricts = [[Namespace("p", (str(i % 10),))] for i in range(n)]
    cfg = SearchConfig(dimensions=8, distance=distance, feature_norm="NONE", algorithm="brute_force")
    return ExampleIndex.build(x, [str(i) for i in range(n)], restricts, None, cfg, use_gpu=use_gpu), rng


def test_auto_placement_uses_gpu_and_matches_cpu(fake_gpu):
    index, rng = build("SQUARED_L2_DISTANCE")
    assert index.info.device == "gpu" and len(fake_gpu) == 1
    q = rng.standard_normal((5, 8)).astype(np.float32)
    with mock.patch.object(faiss, "get_num_gpus", lambda: 0):
        cpu, _ = build("SQUARED_L2_DISTANCE", use_gpu=False)
    assert cpu.info.device == "cpu"
    for kwargs in ({}, {"restricts": [[Namespace("p", ("3",))]] * 5}, {"crowding_count": 1}):
        got, want = index.search(q, 10, **kwargs), cpu.search(q, 10, **kwargs)
        assert [[n.position for n in r] for r in got] == [[n.position for n in r] for r in want]
    assert fake_gpu[0].calls  # the unfiltered search went to the "GPU"


def test_large_k_goes_to_cpu(fake_gpu):
    index, rng = build("DOT_PRODUCT_DISTANCE")
    index.search(rng.standard_normal((1, 8)).astype(np.float32), backend.GPU_MAX_K + 1)
    assert all(k <= backend.GPU_MAX_K for k in fake_gpu[0].calls)


def test_l1_and_opt_out_stay_on_cpu(fake_gpu):
    assert build("L1_DISTANCE")[0].info.device == "cpu"
    assert build("SQUARED_L2_DISTANCE", use_gpu=False)[0].info.device == "cpu"
    assert len(fake_gpu) == 0
