"""The one independent oracle of the project's search semantics, in plain
numpy (float64), written apart from the code it checks: distances for every
measure, nearest neighbors, token restricts and greedy crowding."""
from __future__ import annotations

import numpy as np


def distances(queries: np.ndarray, examples: np.ndarray, distance: str, norm: str = "NONE") -> np.ndarray:
    """(queries, examples) distances, smaller is nearer for every measure."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    x = np.asarray(examples, dtype=np.float64)
    if norm == "UNIT_L2_NORM" or distance == "COSINE_DISTANCE":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if distance == "DOT_PRODUCT_DISTANCE":
        return -(q @ x.T)
    if distance == "COSINE_DISTANCE":
        return 1.0 - q @ x.T
    if distance == "SQUARED_L2_DISTANCE":
        return np.maximum((q * q).sum(1)[:, None] - 2.0 * q @ x.T + (x * x).sum(1)[None, :], 0.0)
    if distance == "L1_DISTANCE":
        return np.stack([np.abs(x - row).sum(1) for row in q])     # one query at a time: memory O(N d)
    raise ValueError(distance)


def nearest(examples: np.ndarray, queries: np.ndarray, k: int, distance: str, unit_norm: bool = False):
    """(positions, distances) of the k nearest examples per query, nearest first."""
    d = distances(queries, examples, distance, "UNIT_L2_NORM" if unit_norm else "NONE")
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


def matches(example: dict, clauses) -> bool:
    """Token restricts. example: {namespace: (allow set, deny set)}; clauses:
    [(namespace, allow list, deny list)], ANDed. A clause with allow tokens
    needs one of them among the example's tokens, and none of them among the
    example's own deny tokens; a query deny token excludes examples holding
    it; an example with no tokens in a namespace the query allows on does not
    match."""
    for ns, allow, deny in clauses:
        has, denies = example.get(ns, (set(), set()))
        if allow and (not has & set(allow) or denies & set(allow)):
            return False
        if has & set(deny):
            return False
    return True


def crowded_search(dist: np.ndarray, admissible: np.ndarray, tags: list, k: int, crowding: int) -> list[int]:
    """Greedy in distance order: at most `crowding` results per tag (0: no limit;
    examples without a tag are never limited)."""
    out, used = [], {}
    for pos in np.argsort(dist, kind="stable"):
        if not admissible[pos]:
            continue
        tag = tags[pos]
        if crowding and tag not in (None, ""):
            if used.get(tag, 0) >= crowding:
                continue
            used[tag] = used.get(tag, 0) + 1
        out.append(int(pos))
        if len(out) == k:
            break
    return out


# ----- feature attributions -------------------------------------------------------------------

def shapley_by_enumeration(value, players: int) -> np.ndarray:
    """Exact Shapley values of `players` players: value(coalition as a frozenset) -> float, called
    once per coalition; the textbook sum over every coalition without the player."""
    import itertools
    import math

    worth = {}
    for size in range(players + 1):
        for members in itertools.combinations(range(players), size):
            worth[frozenset(members)] = float(value(frozenset(members)))
    out = np.zeros(players)
    for i in range(players):
        others = [p for p in range(players) if p != i]
        for size in range(players):
            weight = math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)
            for members in itertools.combinations(others, size):
                coalition = frozenset(members)
                out[i] += weight * (worth[coalition | {i}] - worth[coalition])
    return out


def integrated_gradients_tf(function, x, baseline, steps: int = 2000):
    """IG of a scalar TensorFlow function along the straight path, by the trapezoid rule over
    `steps` intervals, the gradients from tf.GradientTape (another quadrature than the server's)."""
    import tensorflow as tf

    x = np.asarray(x, np.float64)
    baseline = np.asarray(baseline, np.float64)
    alphas = np.linspace(0.0, 1.0, steps + 1)
    points = tf.constant(baseline[None] + alphas.reshape((-1,) + (1,) * x.ndim) * (x - baseline)[None])
    with tf.GradientTape() as tape:
        tape.watch(points)
        total = tf.reduce_sum(function(points))
    gradients = tape.gradient(total, points).numpy()
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] /= 2
    return (x - baseline) * np.tensordot(weights, gradients, axes=1)


def assert_json_close(got, want, rel: float, abs_tol: float, exact_layout: bool = False, path: str = "") -> None:
    """`got` is the JSON `want` is, its numbers within rel/abs_tol. exact_layout: keys in
    the same order, and every value of the same type (a float stays a float), as two
    writers of one format must agree; else equal key sets and equal values suffice."""
    if isinstance(want, dict):
        assert isinstance(got, dict), (path, got)
        if exact_layout:
            assert list(got) == list(want), (path, list(got), list(want))
        else:
            assert got.keys() == want.keys(), (path, sorted(got), sorted(want))
        for key in want:
            assert_json_close(got[key], want[key], rel, abs_tol, exact_layout, f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            assert_json_close(g, w, rel, abs_tol, exact_layout, f"{path}[{i}]")
    elif isinstance(want, float):
        assert type(got) is float if exact_layout else type(got) in (int, float), (path, got, want)
        # pytest.approx's rule: within rel of the expected value, or abs_tol
        assert abs(got - want) <= max(rel * abs(want), abs_tol), (path, got, want)
    else:
        assert not exact_layout or type(got) is type(want), (path, got, want)
        assert got == want, (path, got, want)
