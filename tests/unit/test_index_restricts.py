"""Restricts: parsing, and the worked cases of docs/semantics.md through a real index."""
import numpy as np
import pytest

from explaind.server.errors import InvalidArgument
from explaind.server.index import ExampleIndex, Namespace, SearchConfig, and_queries, parse_restricts

FIELD = "explanation_spec_override.examples_override.restrictions"


def test_parse_spellings():
    value = [
        {"namespace": "color", "allow": ["red", "blue", "red"], "deny": ["green"]},
        {"namespace_name": "shape", "allow_list": ["square"]},
        {"namespaceName": "size", "denyList": ["xl"]},
        {"namespace": "any"},
    ]
    assert parse_restricts(value, FIELD) == [
        Namespace("color", ("red", "blue"), ("green",)),
        Namespace("shape", ("square",)),
        Namespace("size", (), ("xl",)),
        Namespace("any"),
    ]


@pytest.mark.parametrize("empty", ["", None, []])
def test_parse_empty(empty):
    assert parse_restricts(empty, "instances[0].restricts") == []


@pytest.mark.parametrize("value, field", [
    ({"namespace": "color"}, FIELD),
    ("color", FIELD),
    ([{"namespace": "a"}, {"namespace": "b"}, {"namespace_name": ""}], f"{FIELD}[2].namespace_name"),
    ([{"allow": ["x"]}], f"{FIELD}[0].namespace_name"),
    ([{"namespace": 3}], f"{FIELD}[0].namespace"),
    ([{"namespace": "a"}, {"namespace": "a"}], f"{FIELD}[1].namespace"),
    ([{"namespace": "a", "allow": ["x", 3]}], f"{FIELD}[0].allow[1]"),
    ([{"namespace": "a", "deny_list": "x"}], f"{FIELD}[0].deny_list"),
    ([{"namespace": "a", "alow": ["x"]}], f"{FIELD}[0].alow"),
    ([{"namespace": "a", "allow": ["x"], "allowList": ["y"]}], f"{FIELD}[0].allowList"),
    ([{"namespace": "a"}, 7], f"{FIELD}[1]"),
])
def test_parse_errors_name_the_field(value, field):
    with pytest.raises(InvalidArgument) as e:
        parse_restricts(value, FIELD)
    assert e.value.field == field


def test_parse_token_limit():
    ok = [{"namespace": "a", "allow": ["x", "y"]}, {"namespace": "b", "deny": ["z"]}]
    assert len(parse_restricts(ok, "instances[3].restricts", max_tokens=3)) == 2
    with pytest.raises(InvalidArgument) as e:
        parse_restricts(ok, "instances[3].restricts", max_tokens=2)
    assert e.value.field == "instances[3].restricts[1]"


def test_and_queries_keeps_clauses_apart():
    a = [Namespace("color", ("red",))]
    b = [Namespace("color", ("blue",))]
    assert and_queries(a, None, b) == [Namespace("color", ("red",)), Namespace("color", ("blue",))]


# docs/semantics.md, Restrictions: the worked cases.
EXAMPLES = {
    "A": Namespace("color"),
    "B": Namespace("color", ("red",)),
    "C": Namespace("color", ("blue",)),
    "D": Namespace("color", ("orange",)),
    "E": Namespace("color", ("red", "blue")),
    "F": Namespace("color", ("red",), ("blue",)),
    "G": Namespace("color", ("red", "blue"), ("blue",)),
    "H": Namespace("color", (), ("blue",)),
}
WORKED = [
    (Namespace("color", ("red",)), "BEFG"),
    (Namespace("color", ("blue",)), "CE"),
    (Namespace("color", ("red", "blue")), "BCE"),
    (Namespace("color", (), ("blue",)), "ABDFH"),
    (Namespace("color", ("red",), ("blue",)), "BF"),
    (Namespace("color"), "ABCDEFGH"),
    (None, "ABCDEFGH"),
    # beyond the worked table
    (Namespace("shape", ("square",)), ""),          # no example has the namespace
    (Namespace("color", ("purple",)), ""),          # a token no example has
    (Namespace("color", (), ("purple",)), "ABCDEFGH"),
]


@pytest.fixture(scope="module")
def worked_index():
    ids = list(EXAMPLES)
    emb = np.arange(len(ids), dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    cfg = SearchConfig(dimensions=4, distance="SQUARED_L2_DISTANCE", feature_norm="NONE", algorithm="brute_force")
    return ExampleIndex.build(emb, ids, [[EXAMPLES[i]] for i in ids], [None] * len(ids), cfg)


@pytest.mark.parametrize("clause, expected", WORKED)
def test_worked_cases(worked_index, clause, expected):
    query = [clause] if clause else []
    got = worked_index.search(np.zeros((1, 4), np.float32), 100, restricts=[query])[0]
    assert "".join(sorted(i for i, _, _ in got)) == expected


def test_two_clauses_same_namespace_are_anded(worked_index):
    query = [Namespace("color", ("red",)), Namespace("color", ("blue",))]
    got = worked_index.search(np.zeros((1, 4), np.float32), 100, restricts=[query])[0]
    assert sorted(i for i, _, _ in got) == ["E"]  # has red and blue, denies neither


def test_batch_rows_with_different_restricts(worked_index):
    queries = [[c] if c else [] for c, _ in WORKED]
    got = worked_index.search(np.zeros((len(queries), 4), np.float32), 100, restricts=queries)
    assert ["".join(sorted(i for i, _, _ in row)) for row in got] == [e for _, e in WORKED]
