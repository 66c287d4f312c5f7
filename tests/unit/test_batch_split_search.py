"""batch/split_search.SplitSearch: a batch's neighbor search sliced over the job's
cores answers each row as the whole batch's search does, and as a numpy
brute force does (flat); filters, crowding and an IVF index included."""
from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

from explaind.server.batch.split_search import MIN_SLICE_ROWS, SplitSearch
from explaind.server.index import ExampleIndex, SearchConfig
from explaind.server.index.restricts import Namespace

N, D = 3000, 16


def _index(algorithm: str, distance: str = "SQUARED_L2_DISTANCE") -> tuple[ExampleIndex, np.ndarray]:
    vectors = np.random.default_rng(0).normal(size=(N, D)).astype(np.float32)
    config = SearchConfig(dimensions=D, distance=distance, feature_norm="NONE", algorithm=algorithm)
    colours = ["red", "green", "blue"]
    index = ExampleIndex.build(vectors, [f"e{i}" for i in range(N)],
                               [[Namespace("colour", (colours[i % 3],))] for i in range(N)],
                               [f"kind{i % 7}" for i in range(N)], config)
    return index, vectors


def _queries(n: int) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, D)).astype(np.float32)


@pytest.mark.parametrize("cores", [2, 3, 4])
def test_a_sliced_flat_search_is_the_brute_force_answer(cores):
    index, vectors = _index("brute_force")
    queries = _queries(1000)
    search = SplitSearch(index, cores)
    try:
        pos, dist = search.search(queries, 10, None, 0)
    finally:
        search.close()
    exact = ((queries[:, None, :].astype(np.float64) - vectors[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(exact, axis=1, kind="stable")[:, :10]
    assert pos.shape == (1000, 10) and dist.shape == (1000, 10)
    assert (pos == nearest).mean() > 0.999              # float32 rounding may swap near-ties
    np.testing.assert_allclose(dist, np.take_along_axis(exact, pos, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("algorithm", ["brute_force", "tree_ah"])
def test_slices_answer_as_the_whole_batch_with_filters_and_crowding(algorithm):
    index, _ = _index(algorithm)
    queries = _queries(700)
    restricts = [[Namespace("colour", ("red",) if i % 2 else (), ("blue",) if i % 3 == 0 else ())]
                 for i in range(700)]
    whole = [index.search_arrays(queries, 12, restricts=restricts, crowding_count=2),
             index.search_arrays(queries, 5)]
    search = SplitSearch(index, 3)
    try:
        sliced = [search.search(queries, 12, restricts, 2), search.search(queries, 5, None, 0)]
    finally:
        search.close()
    for (want_pos, want_dist), (pos, dist) in zip(whole, sliced):
        np.testing.assert_array_equal(pos, want_pos)
        np.testing.assert_allclose(dist, want_dist, rtol=1e-5, atol=1e-5)
    pos = sliced[0][0]
    kinds = np.where(pos >= 0, pos % 7, -1)
    for row in range(700):                               # the filters and crowding held in every slice
        colours = pos[row][pos[row] >= 0] % 3            # 0 red, 1 green, 2 blue
        if row % 2:
            assert (colours == 0).all()                  # only red allowed
        if row % 3 == 0:
            assert (colours != 2).all()                  # blue denied
        assert np.bincount(kinds[row][kinds[row] >= 0], minlength=7).max() <= 2


def test_a_small_batch_is_not_sliced_and_slices_search_on_one_openmp_thread():
    index, _ = _index("brute_force")
    seen = []
    original = index.search_arrays

    def recording(*args, **kwargs):
        seen.append((threading.current_thread().name, faiss.omp_get_max_threads(), len(args[0])))
        return original(*args, **kwargs)

    index.search_arrays = recording
    search = SplitSearch(index, 4)
    try:
        search.search(_queries(2 * MIN_SLICE_ROWS - 1), 3, None, 0)
        assert len(seen) == 1 and not seen[0][0].startswith("job-search")
        seen.clear()
        search.search(_queries(4 * MIN_SLICE_ROWS + 5), 3, None, 0)
    finally:
        search.close()
    assert len(seen) == 4 and sum(rows for _, _, rows in seen) == 4 * MIN_SLICE_ROWS + 5
    assert all(name.startswith("job-search") for name, _, _ in seen)
