"""A single query on a CPU flat index takes the BLAS scan path; it must return
what the FAISS path (taken by batches) returns, and what a float64 oracle says."""
import numpy as np
import pytest

from explaind.server.index import ExampleIndex, SearchConfig

N, D, K = 3000, 24, 10


@pytest.mark.parametrize("distance,norm", [("DOT_PRODUCT_DISTANCE", "NONE"), ("SQUARED_L2_DISTANCE", "NONE"),
                                           ("COSINE_DISTANCE", "NONE"), ("SQUARED_L2_DISTANCE", "UNIT_L2_NORM"),
                                           ("L1_DISTANCE", "NONE")])
def test_single_query_equals_batched_and_oracle(distance, norm):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(N, D)).astype(np.float32)
    queries = rng.normal(size=(5, D)).astype(np.float32)
    config = SearchConfig(dimensions=D, distance=distance, feature_norm=norm, algorithm="brute_force")
    index = ExampleIndex.build(x, [str(i) for i in range(N)], None, None, config)
    batched = index.search(queries, K)
    for i, q in enumerate(queries):
        single = index.search(q[None], K)[0]
        assert [n.position for n in single] == [n.position for n in batched[i]]
        np.testing.assert_allclose([d for _, d, _ in single], [d for _, d, _ in batched[i]], rtol=1e-4, atol=1e-4)
        xx, qq = x.astype(np.float64), q.astype(np.float64)
        if norm == "UNIT_L2_NORM" or distance == "COSINE_DISTANCE":
            xx = xx / np.linalg.norm(xx, axis=1, keepdims=True)
            qq = qq / np.linalg.norm(qq)
        oracle = {"DOT_PRODUCT_DISTANCE": -(xx @ qq), "COSINE_DISTANCE": 1 - xx @ qq,
                  "SQUARED_L2_DISTANCE": ((xx - qq) ** 2).sum(1), "L1_DISTANCE": np.abs(xx - qq).sum(1)}[distance]
        assert [n.position for n in single] == list(np.argsort(oracle, kind="stable")[:K])
    # Asking for more than there is returns everything, nearest first.
    everything = index.search(queries[:1], N + 5)[0]
    assert len(everything) == N
    assert [d for _, d, _ in everything] == sorted(d for _, d, _ in everything)
