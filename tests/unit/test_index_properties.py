"""Property tests: filtered, crowded search equals an independent numpy oracle
(tests/oracles.py) of the restricts and crowding rules, for every filtering strategy,
on a Flat index, on an IVF-Flat index that probes every list (so it is exact), and
on a compressed IVF index (4-bit codes) that probes every list and re-ranks every
candidate exactly (exact too: the codes only choose candidates)."""
import math
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pytest

from explaind.server.index import ExampleIndex, Namespace, SearchConfig
from explaind.server.index import distances
from explaind.server.index.config import IndexPlan
from explaind.server.index.search_params import FilterPolicy, SearchParams
from tests import oracles

# Slow tier (pytest -m 'not slow' leaves it out): property tests (hypothesis): 30 cases per strategy and index kind.
pytestmark = pytest.mark.slow

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


# Each strategy pinned by the index's policy; "exhaustive" sends every crowded
# query to the one-pass exact fallback, with tiny L1 blocks.
POLICIES = {
    "auto": FilterPolicy(),
    "subset": FilterPolicy(force="subset"),
    "selector": FilterPolicy(force="selector"),
    "postfilter": FilterPolicy(force="postfilter"),
    "exhaustive": FilterPolicy(crowding_max_fetch=0),
}


@pytest.mark.parametrize("kind", ["flat", "ivf", "ivf_pq"])
@pytest.mark.parametrize("strategy", list(POLICIES))
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
        dist = oracles.distances(qs[row], x, case["distance"], case["norm"])[0]
        admissible = np.array([oracles.matches(e, clauses) for e in as_sets], dtype=bool)
        # The greedy crowded set is only defined up to ties: keep distances apart.
        d = np.sort(dist[admissible])
        assume(d.size < 2 or np.diff(d).min() > 1e-3 * (1 + np.abs(d).max()))
        expected.append((dist, oracles.crowded_search(dist, admissible, tags, case["k"], case["crowding"])))

    c = SearchConfig(dimensions=4, distance=case["distance"], feature_norm=case["norm"],
                     algorithm="brute_force" if kind == "flat" else "tree_ah",
                     leaf_node_embedding_count=8, leaf_nodes_to_search_percent=100,
                     approximate_neighbors_count=64)       # more than any case's examples
    # IVF even on a handful of examples: lists of about 8, every list probed. Codes
    # need 16 training points (16 centroids a sub-vector).
    nlist = min(math.ceil(n / 8), n) if kind != "flat" else 0
    pq_m = 2 if kind == "ivf_pq" else 0
    plan = IndexPlan(nlist, nlist, pq_m) if nlist > 1 and (not pq_m or n >= 16) else IndexPlan(0, 0)
    with mock.patch.object(distances, "L1_BLOCK", 8 if strategy == "exhaustive" else distances.L1_BLOCK):
        index = ExampleIndex.build(x, [f"e{i}" for i in range(n)], restricts, tags, c, plan=plan)
        got = index.search(qs, case["k"], restricts=query_ns, crowding_count=case["crowding"],
                           params=SearchParams(filter_policy=POLICIES[strategy]))

    for row, (dist, want) in enumerate(expected):
        assert [n.position for n in got[row]] == want
        assert [i for i, _, _ in got[row]] == [f"e{p}" for p in want]
        np.testing.assert_allclose([d for _, d, _ in got[row]], dist[want], rtol=1e-4, atol=1e-4)
