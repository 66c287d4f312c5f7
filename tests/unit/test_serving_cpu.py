"""How the serving process uses its cores: FAISS's BLAS path for batches (this
module), the thread plan (serving/cpu.py)."""
import faiss
import numpy as np
import pytest

from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.index.backend import BLAS_FROM_QUERIES, use_blas_for_batches
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
