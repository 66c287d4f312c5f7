"""Restrictions and crowding through the daemon, against the independent numpy
oracle of the rules (tests/oracles.py)."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests import oracles
from tests.integration.helpers import model_payload, neighbor_ids, search_config, write_jsonl

WORKED = {  # the worked cases of docs/semantics.md, namespace "color"
    "A": ([], []), "B": (["red"], []), "C": (["blue"], []), "D": (["orange"], []),
    "E": (["red", "blue"], []), "F": (["red"], ["blue"]), "G": (["red", "blue"], ["blue"]), "H": ([], ["blue"]),
}
CASES = [
    ({"allow": ["red"]}, "BEFG"),
    ({"allow": ["blue"]}, "CE"),
    ({"allow": ["red", "blue"]}, "BCE"),
    ({"deny": ["blue"]}, "ABDFH"),
    ({"allow": ["red"], "deny": ["blue"]}, "BF"),
    (None, "ABCDEFGH"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.server_process import ServerProcess
    base = tmp_path_factory.mktemp("filters")
    proc = ServerProcess(str(base / "store"), str(base / "log"), cache_dir=str(base / "cache")).start()
    yield proc, base
    assert proc.stop() == 0


def _restricts(allow, deny, namespace="color"):
    entry = {"namespace": namespace}
    if allow:
        entry["allow"] = allow
    if deny:
        entry["deny"] = deny
    return [entry]


def test_worked_cases_through_the_server(server):
    proc, base = server
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(WORKED), 4)).astype(np.float32)
    records = [{"id": name, "embedding": vectors[i].tolist(), "restricts": _restricts(*WORKED[name])}
               for i, name in enumerate(WORKED)]
    data = write_jsonl(base / "worked.jsonl", records)
    with proc.client() as client:
        client.wait(client.upload_model(model_payload("", [data], search_config(4, "SQUARED_L2_DISTANCE"),
                                                      neighbor_count=8), model_id="worked"), timeout=60)
        for query, expected in CASES:
            restrictions = [dict(namespace="color", **query)] if query else None
            response = client.explain("worked", [[0.0] * 4], embeddings=True, restrictions=restrictions)
            assert sorted(neighbor_ids(response.explanations[0])) == sorted(expected), query
            # The same restriction carried by the instance instead of the override.
            instance = {"embedding": [0.0] * 4, "restricts": [dict(namespace="color", **query)] if query else ""}
            response = client.explain("worked", [instance], embeddings=True)
            assert sorted(neighbor_ids(response.explanations[0])) == sorted(expected), query


def test_random_filters_and_crowding_match_the_oracle(server):
    proc, base = server
    rng = np.random.default_rng(42)
    n, d = 3000, 8
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    colors, shapes = ["red", "green", "blue", "black"], ["circle", "square", "star"]
    records, example_restricts, tags = [], [], []
    for i in range(n):
        r = {}
        entry = []
        color_allow = set(rng.choice(colors, size=rng.integers(0, 3), replace=False).tolist())
        color_deny = set(rng.choice(colors, size=rng.integers(0, 2), replace=False).tolist()) if rng.random() < .2 else set()
        shape_allow = set(rng.choice(shapes, size=rng.integers(0, 2), replace=False).tolist())
        if color_allow or color_deny:
            entry.append({"namespace": "color", "allow": sorted(color_allow), "deny": sorted(color_deny)})
            r["color"] = (color_allow, color_deny)
        if shape_allow:
            entry.append({"namespace": "shape", "allow": sorted(shape_allow)})
            r["shape"] = (shape_allow, set())
        tag = f"class-{rng.integers(0, 20)}" if rng.random() < 0.9 else ""
        records.append({"id": f"e{i}", "embedding": vectors[i].tolist(), "restricts": entry, "crowding_tag": tag})
        example_restricts.append(r)
        tags.append(tag)
    data = write_jsonl(base / "random.jsonl", records)
    with proc.client() as client:
        client.wait(client.upload_model(model_payload("", [data], search_config(d, "DOT_PRODUCT_DISTANCE"),
                                                      neighbor_count=10), model_id="random"), timeout=120)
        queries = rng.normal(size=(25, d)).astype(np.float32)
        for qi, q in enumerate(queries):
            clauses = []
            if rng.random() < 0.7:
                clauses.append({"namespace": "color",
                                "allow": rng.choice(colors, size=rng.integers(0, 3), replace=False).tolist(),
                                "deny": rng.choice(colors, size=rng.integers(0, 2), replace=False).tolist()})
            if rng.random() < 0.5:
                clauses.append({"namespace": "shape", "allow": [str(rng.choice(shapes))]})
            crowding = int(rng.integers(0, 3))
            k = int(rng.integers(1, 30))
            as_clauses = [(c["namespace"], c.get("allow", []), c.get("deny", [])) for c in clauses]
            mask = np.array([oracles.matches(er, as_clauses) for er in example_restricts])
            dist = oracles.distances(q, vectors, "DOT_PRODUCT_DISTANCE")[0]
            expected = [f"e{j}" for j in oracles.crowded_search(dist, mask, tags, k, crowding)]
            response = client.explain("random", [q.tolist()], embeddings=True, neighbor_count=k,
                                      crowding_count=crowding, restrictions=clauses)
            assert neighbor_ids(response.explanations[0]) == expected, (qi, clauses, crowding, k)


def test_restriction_bounds(server):
    proc, _ = server
    with proc.client() as client:
        with pytest.raises(grpc.RpcError) as err:
            client.explain("worked", [[0.0] * 4], embeddings=True,
                           restrictions=[{"namespace": "color", "allow": ["a"]},
                                         {"namespace": "color", "deny": ["b"]}])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            client.explain("worked", [[0.0] * 4], embeddings=True, crowding_count=-1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            client.explain("worked", [[0.0] * 4], embeddings=True,
                           restrictions=[{"namespace": "color", "allow": [f"t{i}" for i in range(2000)]}])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
