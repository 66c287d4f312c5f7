"""Search knobs passed per call (SearchParams): they change what one call
probes and re-ranks, never the index, so concurrent calls with other knobs
(and the model's own searches) keep theirs. Checked against numpy brute
force (tests/oracles.py)."""
import threading

import numpy as np
import pytest

from explaind.server.index import ExampleIndex, Namespace, SearchConfig
from explaind.server.index.search_params import FilterPolicy, SearchParams
from tests import oracles

N, D, K = 8000, 16, 10


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((40, D)).astype(np.float32) * 3
    x = (centers[rng.integers(0, 40, N)] + rng.standard_normal((N, D))).astype(np.float32)
    q = (centers[rng.integers(0, 40, 40)] + rng.standard_normal((40, D))).astype(np.float32)
    restricts = [[Namespace("half", ("a" if i % 2 else "b",))] for i in range(N)]
    config = SearchConfig(dimensions=D, distance="SQUARED_L2_DISTANCE", algorithm="tree_ah",
                          leaf_node_embedding_count=400, leaf_nodes_to_search_percent=5)
    index = ExampleIndex.build(x, [str(i) for i in range(N)], restricts, None, config, use_gpu=False)
    assert index.info.nlist == 20 and index.info.nprobe == 1
    return index, x, q


def recall(pos, truth):
    return float(np.mean([len(set(p.tolist()) & set(t.tolist())) / K for p, t in zip(pos, truth)]))


def test_every_leaf_and_every_candidate_give_the_exact_answer(setup):
    index, x, q = setup
    truth, truth_dist = oracles.nearest(x, q, K, "SQUARED_L2_DISTANCE")
    everything = SearchParams(leaves_to_search=index.info.nlist, approximate_neighbors_count=N)
    pos, dist = index.search_arrays(q, K, params=everything)
    np.testing.assert_array_equal(pos, truth)
    np.testing.assert_allclose(dist, truth_dist, rtol=1e-4, atol=1e-3)
    # One leaf and few candidates find less: the knobs reach FAISS and the re-rank.
    narrow, _ = index.search_arrays(q, K, params=SearchParams(leaves_to_search=1, approximate_neighbors_count=K))
    assert recall(narrow, truth) < 0.95


def test_knobs_leave_the_index_and_other_calls_alone(setup):
    index, _, q = setup
    info = index.info
    default, _ = index.search_arrays(q, K)
    index.search_arrays(q, K, params=SearchParams(leaves_to_search=20, approximate_neighbors_count=500))
    again, _ = index.search_arrays(q, K)
    np.testing.assert_array_equal(again, default)
    assert index.info == info and index.config.approximate_neighbors_count == 0
    # More leaves than the index has are all of them.
    np.testing.assert_array_equal(index.search_arrays(q, K, params=SearchParams(leaves_to_search=10**6))[0],
                                  index.search_arrays(q, K, params=SearchParams(leaves_to_search=20))[0])


def test_concurrent_calls_with_other_knobs_get_their_own_answers(setup):
    index, _, q = setup
    knobs = [SearchParams(leaves_to_search=p, approximate_neighbors_count=r) for p, r in ((1, 10), (20, 1000))]
    knobs.append(SearchParams(filter_policy=FilterPolicy(force="selector")))
    restricts = [None, None, [[Namespace("half", ("a",))]] * len(q)]
    want = [index.search_arrays(q, K, r, params=p)[0] for r, p in zip(restricts, knobs)]
    assert not np.array_equal(want[0], want[1])
    errors, barrier = [], threading.Barrier(len(knobs))

    def run(i):
        barrier.wait()
        for _ in range(5):
            got = index.search_arrays(q, K, restricts[i], params=knobs[i])[0]
            if not np.array_equal(got, want[i]):
                errors.append(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(knobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("make", [lambda: SearchParams(leaves_to_search=0),
                                  lambda: SearchParams(approximate_neighbors_count=-1),
                                  lambda: FilterPolicy(force="fastest")])
def test_bad_knobs_are_refused(make):
    with pytest.raises(ValueError):
        make()
