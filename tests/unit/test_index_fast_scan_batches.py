"""search_by_list (many queries taken in order of their nearest list, a batch
at a time) answers exactly what one fast-scan search over all of them answers:
with the index's own probes, with probes given per call, and through a
selector; and the re-ranked index answers match the numpy oracle."""
import faiss
import numpy as np
import pytest

from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.index.backend import FAST_SCAN_BATCH, fast_scan, search_by_list
from tests import oracles

D, N = 16, 6000  # treeAh is exact below 5000 examples


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(11)
    centers = rng.normal(scale=4.0, size=(40, D))
    x = (centers[rng.integers(0, 40, N)] + rng.normal(size=(N, D))).astype(np.float32)
    # More queries than one batch, and not a multiple of it, so the last batch is partial.
    q = (centers[rng.integers(0, 40, 3 * FAST_SCAN_BATCH + 37)] + rng.normal(size=(3 * FAST_SCAN_BATCH + 37, D)))
    return x, q.astype(np.float32)


def tree_ah(**kw) -> SearchConfig:
    return SearchConfig(dimensions=D, distance="SQUARED_L2_DISTANCE", feature_norm="NONE", algorithm="tree_ah",
                        leaf_node_embedding_count=100, leaf_nodes_to_search_percent=10, **kw)


def same_answers(got, expected):
    # Equal distances row by row; ids equal wherever the distances are not tied.
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-4)
    untied = np.diff(expected[0], axis=1, prepend=-np.inf) > 1e-4
    untied[:, :-1] &= np.diff(expected[0], axis=1) > 1e-4
    assert np.array_equal(got[1][untied], expected[1][untied])


def test_batched_in_list_order_equals_one_search(clustered):
    x, q = clustered
    codes = ExampleIndex.build(x, [str(i) for i in range(N)], None, None, tree_ah()).contents.require_faiss_index()
    index = fast_scan(codes)
    assert isinstance(index, faiss.IndexIVFFastScan) and len(q) > FAST_SCAN_BATCH
    same_answers(search_by_list(index, q, 30), index.search(q, 30))
    params = faiss.SearchParametersIVF(nprobe=7)
    same_answers(search_by_list(index, q, 30, params), index.search(q, 30, params=params))
    admitted = np.zeros(N, dtype=bool)
    admitted[::3] = True
    bitmap = np.packbits(admitted, bitorder="little")
    selected = faiss.SearchParametersIVF(sel=faiss.IDSelectorBitmap(N, faiss.swig_ptr(bitmap)), nprobe=5)
    got = search_by_list(index, q, 30, selected)
    same_answers(got, index.search(q, 30, params=selected))
    assert np.all(admitted[got[1][got[1] >= 0]])


def test_many_queries_through_the_index_match_the_oracle(clustered):
    x, q = clustered
    config = tree_ah(approximate_neighbors_count=200, neighbor_count=10)
    index = ExampleIndex.build(x, [str(i) for i in range(N)], None, None, config)
    assert index.info.index_type.endswith("x4fs")
    pos, dist = index.search_arrays(q, 10)
    truth, truth_dist = oracles.nearest(x, q, 10, "SQUARED_L2_DISTANCE")
    found = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(pos, truth)])
    assert found >= 0.95
    exact = oracles.distances(q, x, "SQUARED_L2_DISTANCE", "NONE")
    np.testing.assert_allclose(dist, np.take_along_axis(exact, pos, axis=1), rtol=1e-4, atol=1e-3)
