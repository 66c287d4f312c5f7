"""The GPU code path, run on a CPU-only machine with FAISS's GPU entry points
faked (the "GPU index" is a CPU clone): placement, routing and fallbacks."""
from unittest import mock

import faiss
import numpy as np
import pytest

from explaind.server.index import ExampleIndex, Namespace, SearchConfig
from explaind.server.index import backend
from tests import oracles

# Slow tier (pytest -m 'not slow' leaves it out): compressed indexes trained for their GPU twins.
pytestmark = pytest.mark.slow


class FakeGpuIndex:
    """A "GPU index": a CPU clone of what would be copied to the GPU (for a
    compressed index, the empty 8-bit IVF-PQ twin, then filled through add_with_ids)."""

    def __init__(self, index):
        self.inner = faiss.clone_index(index)
        self.calls = []

    def search(self, x, k, params=None):
        self.calls.append(k)
        return self.inner.search(x, k, params=params)

    def add_with_ids(self, x, ids):
        self.inner.add_with_ids(x, ids)

    @property
    def nprobe(self):
        return self.inner.nprobe

    @nprobe.setter
    def nprobe(self, value):
        self.inner.nprobe = value


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


# ---- filters are never trusted unverified (FAISS's classic GPU kernels ignore selectors)

class IgnoresSelectors(FakeGpuIndex):
    """A classic FAISS GPU build: search parameters, the selector included, are ignored."""

    def search(self, x, k, params=None):
        self.calls.append(k)
        return self.inner.search(x, k)


class PassesTheProbeOnly(FakeGpuIndex):
    """Honours selectors for its first two searches (the placement probe), then ignores them."""

    def search(self, x, k, params=None):
        self.calls.append(k)
        return self.inner.search(x, k, params=params if len(self.calls) <= 2 else None)


def _selector_band_index(gpu_class, algorithm):
    """30k examples, token "p:<i % 10>": one token admits 10%, which on the GPU is
    past the subset scan (2048 rows) and under the post-filter band: the selector path."""
    rng = np.random.default_rng(1)
    n = 30_000
    x = rng.standard_normal((n, 8)).astype(np.float32)
    restricts = [[Namespace("p", (str(i % 10),))] for i in range(n)]
    cfg = SearchConfig(dimensions=8, distance="SQUARED_L2_DISTANCE", feature_norm="NONE", algorithm=algorithm,
                       leaf_node_embedding_count=1000, leaf_nodes_to_search_percent=100)
    made = []

    def to_gpu(res, device, index):
        made.append(gpu_class(index))
        return made[-1]

    with mock.patch.object(faiss, "StandardGpuResources", object, create=True), \
            mock.patch.object(faiss, "index_cpu_to_gpu", to_gpu, create=True), \
            mock.patch.object(faiss, "get_num_gpus", lambda: 1):
        index = ExampleIndex.build(x, [str(i) for i in range(n)], restricts, None, cfg)
    return index, made[0], x, rng


def _assert_oracle(got, x, queries, admissible):
    rows = np.flatnonzero(admissible)
    order, dist = oracles.nearest(x[rows], queries, 10, "SQUARED_L2_DISTANCE")
    for found, want, want_d in zip(got, order, dist):
        assert [n.position for n in found] == rows[want].tolist()
        np.testing.assert_allclose([n.distance for n in found], want_d, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("algorithm", ["brute_force", "tree_ah"])
def test_a_gpu_build_that_ignores_selectors_is_found_out_and_filters_run_on_the_cpu(algorithm):
    index, gpu, x, rng = _selector_band_index(IgnoresSelectors, algorithm)
    assert index.info.device == "gpu" and index._placement.gpu_filters is False
    probe_calls = len(gpu.calls)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    violations = []
    got = index.search(q, 10, restricts=[[Namespace("p", ("3",))]] * 5, on_filter_violation=violations.append)
    _assert_oracle(got, x, q, np.arange(len(x)) % 10 == 3)
    assert len(gpu.calls) == probe_calls and violations == []     # routed to the CPU index: nothing to catch
    index.search(q, 10)
    assert len(gpu.calls) == probe_calls + 1                      # unfiltered searches still use the GPU


@pytest.mark.parametrize("algorithm", ["brute_force", "tree_ah"])
def test_a_placement_that_ignores_a_selector_after_the_probe_is_caught_row_by_row(algorithm):
    index, gpu, x, rng = _selector_band_index(PassesTheProbeOnly, algorithm)
    assert index._placement.gpu_filters is True                    # the probe was fooled
    q = rng.standard_normal((5, 8)).astype(np.float32)
    violations = []
    got = index.search(q, 10, restricts=[[Namespace("p", ("3",))]] * 5, on_filter_violation=violations.append)
    _assert_oracle(got, x, q, np.arange(len(x)) % 10 == 3)        # answered again, exactly
    assert len(gpu.calls) > 2 and sum(violations) == 5            # every row returned excluded examples


# ---- a compressed index on the GPU: an 8-bit IVF-PQ twin (index/gpu_codes.py)

def _clustered(n, d, seed):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).standard_normal((60, d)).astype(np.float32) * 3
    return (centers[rng.integers(0, 60, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_a_compressed_index_places_an_ivfpq_twin_on_the_gpu_and_reranks_on_the_cpu(fake_gpu):
    from explaind.server.index import search_config_from_presets
    d, n = 32, 20_000
    x, q = _clustered(n, d, 3), _clustered(50, d, 4)
    restricts = [[Namespace("p", (str(i % 10),))] for i in range(n)]
    index = ExampleIndex.build(x, [str(i) for i in range(n)], restricts, None,
                               search_config_from_presets("PRECISE", "TABULAR", 10))
    assert index.info.device == "gpu" and index.info.index_type.endswith("x4fs")
    twin = fake_gpu[0].inner
    assert isinstance(twin, faiss.IndexIVFPQ) and (twin.pq.M, twin.pq.nbits) == (d // 4, 8)
    assert twin.ntotal == n and twin.nlist == index.info.nlist and twin.nprobe == index.info.nprobe
    got = index.search(q, 10)
    assert fake_gpu[0].calls                     # the candidates came from the "GPU"
    truth, _ = oracles.nearest(x, q, 10, "SQUARED_L2_DISTANCE")
    assert np.mean([len({n.position for n in row} & set(t.tolist())) / 10 for row, t in zip(got, truth)]) >= 0.99
    for query, row in zip(q, got):               # distances are exact: re-ranked against the full vectors
        want = oracles.distances(query, x[[n.position for n in row]], "SQUARED_L2_DISTANCE")[0]
        np.testing.assert_allclose([n.distance for n in row], want, rtol=1e-4, atol=1e-3)
    filtered = index.search(q[:5], 10, restricts=[[Namespace("p", ("3",))]] * 5)
    assert all(len(row) == 10 and all(n.position % 10 == 3 for n in row) for row in filtered)


def test_without_a_gpu_layout_a_compressed_index_stays_on_the_cpu(fake_gpu):
    from explaind.server.index import search_config_from_presets
    from explaind.server.index.gpu_codes import gpu_pq_m
    assert (gpu_pq_m(128), gpu_pq_m(32), gpu_pq_m(768), gpu_pq_m(7)) == (32, 8, 96, 0)
    x = _clustered(6000, 7, 5)
    index = ExampleIndex.build(x, [str(i) for i in range(6000)], None, None,
                               search_config_from_presets("FAST", "TABULAR", 10))
    assert index.info.index_type.endswith("x4fs") and index.info.device == "cpu" and not fake_gpu
    assert len(index.search(x[:3], 10)[0]) == 10
