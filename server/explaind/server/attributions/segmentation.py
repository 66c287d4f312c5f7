"""Graph-based image segmentation (Felzenszwalb & Huttenlocher, 2004), numpy + union-find.

Pixels are graph nodes, 8-neighbours are joined by edges weighted by colour
distance. Edges are visited in increasing weight; two components merge when
the edge is no heavier than either component's internal variation plus
scale / size. Larger scale -> larger segments. XRAI runs it at several scales.
"""
from __future__ import annotations

import numpy as np

from .blur import gaussian_blur


def _edges(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each 8-neighbour pair once: (source pixel, target pixel, colour distance)."""
    height, width = image.shape[:2]
    index = np.arange(height * width).reshape(height, width)
    sources, targets, weights = [], [], []
    # Offsets to the right, down, down-right and down-left neighbour.
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        rows = slice(0, height - dy)
        cols = slice(max(0, -dx), width - max(0, dx))
        neighbour_cols = slice(max(0, dx), width + min(0, dx))
        a, b = index[rows, cols], index[dy:, neighbour_cols]
        if a.size == 0:
            continue
        diff = image[rows, cols] - image[dy:, neighbour_cols]
        sources.append(a.ravel())
        targets.append(b.ravel())
        weights.append(np.sqrt((diff ** 2).sum(axis=-1)).ravel())
    if not sources:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(sources), np.concatenate(targets), np.concatenate(weights)


def felzenszwalb(image: np.ndarray, scale: float = 100.0, sigma: float = 0.8, min_size: int = 20) -> np.ndarray:
    """Labels (H, W) of consecutive ints for an (H, W) or (H, W, C) image."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[..., None]
    height, width = image.shape[:2]
    smoothed = gaussian_blur(image, sigma)
    sources, targets, weights = _edges(smoothed)
    order = np.argsort(weights, kind="stable")
    sources, targets, weights = sources[order].tolist(), targets[order].tolist(), weights[order].tolist()

    parent = list(range(height * width))
    size = [1] * (height * width)
    internal = [0.0] * (height * width)

    def find(node: int) -> int:
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    def union(a: int, b: int, weight: float) -> None:
        if size[a] < size[b]:
            a, b = b, a
        parent[b] = a
        size[a] += size[b]
        internal[a] = max(internal[a], internal[b], weight)

    for a, b, w in zip(sources, targets, weights):
        ra, rb = find(a), find(b)
        if ra != rb and w <= min(internal[ra] + scale / size[ra], internal[rb] + scale / size[rb]):
            union(ra, rb, w)
    for a, b, w in zip(sources, targets, weights):
        ra, rb = find(a), find(b)
        if ra != rb and (size[ra] < min_size or size[rb] < min_size):
            union(ra, rb, w)

    roots = np.array([find(i) for i in range(height * width)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels.reshape(height, width)
