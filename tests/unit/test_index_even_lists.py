"""Coarse lists of more even size (index/even_lists.py): on clustered data
whose k-means lists are uneven, the moved centroids' lists (nearest centroid,
counted here with FAISS's exact k-NN) are what a one-list query scans less
of; centroids whose lists are even already, and inner-product lists, are
kept as given."""
import faiss
import numpy as np

from explaind.server.index import codes
from explaind.server.index.config import SearchConfig
from explaind.server.index.even_lists import even_lists


def mixture(n: int, d: int, clusters: int, seed: int = 0) -> np.ndarray:
    """The bench's mixture (bench/ann_data.py), smaller: well-separated Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d)).astype(np.float32) * 2
    return centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, d)).astype(np.float32)


def scanned(x: np.ndarray, queries: np.ndarray, centroids: np.ndarray) -> float:
    """Mean size of the list each query probes first."""
    sizes = np.bincount(faiss.knn(x, centroids, 1)[1][:, 0], minlength=len(centroids))
    return float(sizes[faiss.knn(queries, centroids, 1)[1][:, 0]].mean())


def kmeans(x: np.ndarray, nlist: int) -> np.ndarray:
    km = faiss.Kmeans(x.shape[1], nlist, niter=15, seed=1234)
    km.train(x)
    return km.centroids


def test_uneven_kmeans_lists_are_evened_for_queries():
    points = mixture(24_000, 64, clusters=250)
    x, queries = points[:20_000], points[20_000:]
    sample = x[:40 * 256]
    plain = kmeans(sample, 40)
    moved = even_lists(sample, plain)
    assert moved.shape == plain.shape and moved.dtype == np.float32
    before, after = scanned(x, queries, plain), scanned(x, queries, moved)
    assert before > 1.3 * len(x) / 40            # the case it is for: k-means left them uneven
    assert after < 0.85 * before


def test_even_lists_stand():
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((20, 16)).astype(np.float32) * 10
    sample = np.repeat(centers, 50, axis=0) + rng.standard_normal((1000, 16)).astype(np.float32) * 0.1
    assert even_lists(sample, centers) is centers


def test_train_coarse_evens_squared_l2_lists_only():
    x = mixture(12_000, 32, clusters=150, seed=2)
    l2 = SearchConfig(dimensions=32, distance="SQUARED_L2_DISTANCE")
    dot = SearchConfig(dimensions=32, distance="DOT_PRODUCT_DISTANCE")
    plain = kmeans(x, 30)
    assert scanned(x, x[:2000], codes.train_coarse(x, 30, l2)) < scanned(x, x[:2000], plain)
    ip = faiss.IndexIVFFlat(faiss.IndexFlatIP(32), 32, 30, faiss.METRIC_INNER_PRODUCT)
    ip.cp.niter = codes.COARSE_ITERATIONS
    ip.train(x)
    np.testing.assert_array_equal(codes.train_coarse(x, 30, dot), ip.quantizer.reconstruct_n(0, 30))
