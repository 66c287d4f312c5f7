"""Property tests: filtered, crowded search equals an independent numpy oracle
of DESIGN section 4 (Restrictions, Crowding), for every filtering strategy,
on a Flat index and on an IVF index that probes every list (so it is exact)."""
from contextlib import ExitStack
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pytest

from explaind.server.index import ExampleIndex, Namespace, SearchConfig
from explaind.server.index import config as config_module
from explaind.server.index import distances, example_index, filtering

NAMESPACES = ["a", "b", "c"]
TOKENS = ["x", "y", "z"]
QUERY_TOKENS = TOKENS + ["never"]  # a token no example has
DISTANCES = ["DOT_PRODUCT_DISTANCE", "SQUARED_L2_DISTANCE", "L1_DISTANCE", "COSINE_DISTANCE"]

subsets = st.lists(st.sampled_from(TOKENS), max_size=2, unique=True)
example_restricts = st.lists(
    st.tuples(st.sampled_from(NAMESPACES), subsets, subsets), max_size=3, unique_by=lambda t: t[0])
clause = st.tuples(st.sampled_from(NAMESPACES[:2]),  # "c" often absent from examples
                   st.lists(st.sampled_from(QUERY_TOKENS), max_size=2, unique=True),
                   st.lists(st.sampled_from(QUERY_TOKENS), max_size=2, unique=True))
query = st.lists(clause, max_size=3)  # may name one namespace twice: ANDed clauses


@st.composite
def cases(draw):
    n = draw(st.integers(1, 40))
    return dict(
        n=n,
        seed=draw(st.integers(0, 2**32 - 1)),
        examples=draw(st.lists(example_restricts, min_size=n, max_size=n)),
        tags=draw(st.lists(st.sampled_from([None, "t1", "t2", "t3", "t4"]), min_size=n, max_size=n)),
        queries=draw(st.lists(query, min_size=1, max_size=3)),
        k=draw(st.integers(1, n + 3)),
        crowding=draw(st.integers(0, 3)),
        distance=draw(st.sampled_from(DISTANCES)),
        norm=draw(st.sampled_from(["NONE", "UNIT_L2_NORM"])),
    )


# ---- the oracle: DESIGN's rules written out directly over sets


def oracle_matches(example: dict, clauses) -> bool:
    for ns, allow, deny in clauses:
        has, denies = example.get(ns, (set(), set()))
        if allow and (not has & set(allow) or denies & set(allow)):
            return False
        if has & set(deny):
            return False
    return True


def oracle_distances(q, x, distance, norm):
    q, x = q.astype(np.float64), x.astype(np.float64)
    if norm == "UNIT_L2_NORM" or distance == "COSINE_DISTANCE":
        q = q / np.linalg.norm(q)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if distance == "DOT_PRODUCT_DISTANCE":
        return -(x @ q)
    if distance == "COSINE_DISTANCE":
        return 1.0 - x @ q
    if distance == "SQUARED_L2_DISTANCE":
        return ((x - q) ** 2).sum(1)
    return np.abs(x - q).sum(1)


def oracle_search(dist, admissible, tags, k, crowding):
    out, used = [], {}
    for pos in sorted(np.flatnonzero(admissible), key=lambda p: dist[p]):
        tag = tags[pos]
        if crowding and tag is not None:
            if used.get(tag, 0) >= crowding:
                continue
            used[tag] = used.get(tag, 0) + 1
        out.append(int(pos))
        if len(out) == k:
            break
    return out


# Each strategy pinned by moving thresholds; "exhaustive" sends every crowded
# query to the one-pass exact fallback, with tiny L1 blocks.
FORCE = {
    "auto": [],
    "subset": [(filtering, dict(SUBSET_MIN_ROWS=10**9))],
    "selector": [(filtering, dict(SUBSET_MIN_ROWS=0, SUBSET_MAX_ROWS=0, POSTFILTER_MIN_FRACTION=2.0))],
    "postfilter": [(filtering, dict(SUBSET_MIN_ROWS=0, SUBSET_MAX_ROWS=0, POSTFILTER_MIN_FRACTION=0.0))],
    "exhaustive": [(example_index, dict(CROWDING_MAX_FETCH=0)), (distances, dict(L1_BLOCK=8))],
}


@pytest.mark.parametrize("kind", ["flat", "ivf"])
@pytest.mark.parametrize("strategy", list(FORCE))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=cases())
def test_filtered_crowded_search_equals_oracle(strategy, kind, case):
    n, rng = case["n"], np.random.default_rng(case["seed"])
    x = rng.standard_normal((n, 4)).astype(np.float32)
    qs = rng.standard_normal((len(case["queries"]), 4)).astype(np.float32)
    restricts = [[Namespace(ns, tuple(a), tuple(d)) for ns, a, d in ex] for ex in case["examples"]]
    as_sets = [{ns: (set(a), set(d)) for ns, a, d in ex} for ex in case["examples"]]
    query_ns = [[Namespace(ns, tuple(a), tuple(d)) for ns, a, d in q] for q in case["queries"]]
    tags = case["tags"]

    expected = []
    for row, clauses in enumerate(case["queries"]):
        dist = oracle_distances(qs[row], x, case["distance"], case["norm"])
        admissible = np.array([oracle_matches(e, clauses) for e in as_sets], dtype=bool)
        # The greedy crowded set is only defined up to ties: keep distances apart.
        d = np.sort(dist[admissible])
        assume(d.size < 2 or np.diff(d).min() > 1e-3 * (1 + np.abs(d).max()))
        expected.append((dist, oracle_search(dist, admissible, tags, case["k"], case["crowding"])))

    c = SearchConfig(dimensions=4, distance=case["distance"], feature_norm=case["norm"],
                     algorithm="brute_force" if kind == "flat" else "tree_ah",
                     leaf_node_embedding_count=8, leaf_nodes_to_search_percent=100)
    with ExitStack() as stack:
        for module, values in FORCE[strategy]:
            stack.enter_context(mock.patch.multiple(module, **values))
        stack.enter_context(mock.patch.multiple(config_module, EXACT_BELOW=0, MIN_POINTS_PER_LIST=1))
        index = ExampleIndex.build(x, [f"e{i}" for i in range(n)], restricts, tags, c)
        got = index.search(qs, case["k"], restricts=query_ns, crowding_count=case["crowding"])

    for row, (dist, want) in enumerate(expected):
        assert [p for _, _, p in got[row]] == want
        assert [i for i, _, _ in got[row]] == [f"e{p}" for p in want]
        np.testing.assert_allclose([d for _, d, _ in got[row]], dist[want], rtol=1e-4, atol=1e-4)
