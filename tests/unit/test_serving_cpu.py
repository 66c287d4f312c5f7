"""How the serving process uses its cores: FAISS's BLAS path for batches (this
module), the thread plan (serving/cpu.py)."""
import json
import os
import subprocess
import sys

import faiss
import numpy as np
import pytest

from explaind.server.config import Settings
from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.index.backend import BLAS_FROM_QUERIES, use_blas_for_batches
from explaind.server.serving import cpu
from explaind.server.serving.cpu import ThreadPlan, available_cores, plan_threads
from explaind.server.workers import worker_command, worker_settings
from tests import oracles


@pytest.fixture
def blas_for_batches():
    """The serving process's setting, for this test only (it is process-wide)."""
    default = faiss.cvar.distance_compute_blas_threshold
    use_blas_for_batches()
    yield
    faiss.cvar.distance_compute_blas_threshold = default


@pytest.mark.parametrize("distance", ["DOT_PRODUCT_DISTANCE", "SQUARED_L2_DISTANCE", "COSINE_DISTANCE"])
@pytest.mark.parametrize("batch", [BLAS_FROM_QUERIES - 1, BLAS_FROM_QUERIES, 64])
def test_batches_on_the_blas_path_find_the_oracles_neighbors(blas_for_batches, distance, batch):
    assert faiss.cvar.distance_compute_blas_threshold == BLAS_FROM_QUERIES
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5000, 32)).astype(np.float32) * 4     # norms ~23: L2's |q|^2 + |x|^2 - 2<q,x> rounds
    q = rng.standard_normal((batch, 32)).astype(np.float32) * 4
    q[0] = x[17]                                                   # an exact match: distance 0 (L2), not negative
    config = SearchConfig(dimensions=32, distance=distance, feature_norm="NONE", algorithm="brute_force")
    index = ExampleIndex.build(x, [str(i) for i in range(len(x))], None, None, config)
    found = index.search(q, 10)
    want_pos, want_dist = oracles.nearest(x, q, 10, distance)
    for row in range(batch):
        got = found[row]
        assert [n.position for n in got] == want_pos[row].tolist()
        np.testing.assert_allclose([n.distance for n in got], want_dist[row], rtol=1e-4, atol=1e-3)
    if distance == "SQUARED_L2_DISTANCE":
        assert found[0][0].position == 17 and 0.0 <= found[0][0].distance <= 1e-3


# --- the thread plan (serving/cpu.py) ---

def _plan(cores, gpu=False, **settings):
    return plan_threads(Settings(**settings), cores=cores, gpu=gpu)


def test_one_process_keeps_a_core_for_its_event_loop():
    assert _plan(2) == ThreadPlan(cores=2, workers=1, index_threads=1, search_threads=2)
    assert _plan(16) == ThreadPlan(cores=16, workers=1, index_threads=15, search_threads=16)
    assert _plan(1) == ThreadPlan(cores=1, workers=1, index_threads=1, search_threads=1)


def test_workers_share_the_cores():
    assert _plan(16, workers=4) == ThreadPlan(cores=16, workers=4, index_threads=3, search_threads=4)
    assert _plan(2, workers=4) == ThreadPlan(cores=2, workers=4, index_threads=1, search_threads=1)


def test_auto_workers_one_per_two_cores_on_cpu_and_one_with_a_gpu():
    assert _plan(16, workers=0) == ThreadPlan(cores=16, workers=8, index_threads=1, search_threads=2)
    assert _plan(3, workers=0).workers == 1 and _plan(2, workers=0).workers == 1
    assert _plan(16, gpu=True, workers=0) == ThreadPlan(cores=16, workers=1, index_threads=15, search_threads=16)


def test_numbers_the_settings_give_are_kept():
    assert _plan(16, workers=2, index_threads=6, search_threads=3) == \
        ThreadPlan(cores=16, workers=2, index_threads=6, search_threads=3)


@pytest.mark.parametrize("files, cores", [
    ({"cpu.max": "150000 100000\n"}, 2),                  # v2: 1.5 cores of quota, rounded up
    ({"cpu.max": "max 100000\n"}, None),                  # v2: no quota
    ({"cpu.max": "50000 100000\n"}, 1),                   # half a core: at least one
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),   # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),    # v1: no quota
    ({"cpu.max": "garbage\n"}, None),
    ({}, None),
])
def test_available_cores_are_the_affinity_capped_by_the_cgroup_quota(tmp_path, files, cores):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(str(tmp_path)) == (affinity if cores is None else min(affinity, cores))


def test_each_worker_is_started_with_its_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(cpu, "available_cores", lambda: 8)
    settings = worker_settings(Settings(workers=4, use_gpu="no"))
    command = worker_command(settings, 1)
    flags = dict(zip(command[4::2], command[5::2]))
    assert (flags["--workers"], flags["--index-threads"], flags["--search-threads"]) == ("1", "1", "2")


def test_the_daemon_applies_its_plan(tmp_path):
    """In a fresh process (the limits are process-wide): OpenMP, BLAS and FAISS's threshold as planned."""
    code = """
import json, faiss, threadpoolctl
from explaind.server.serving.cpu import ThreadPlan, apply
apply(ThreadPlan(cores=4, workers=1, index_threads=3, search_threads=4))
print(json.dumps([faiss.omp_get_max_threads(), sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()}),
                  faiss.cvar.distance_compute_blas_threshold]))
"""
    out = subprocess.check_output([sys.executable, "-c", code], text=True)
    assert json.loads(out.strip().splitlines()[-1]) == [3, [3], BLAS_FROM_QUERIES]
