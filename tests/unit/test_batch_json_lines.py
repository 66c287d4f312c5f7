"""batch/json_lines.dumps_line: the same JSON as json.dumps for every line, fast
or not; ValueError for the numbers JSON has no word for, as json.dumps(allow_nan=False)."""
from __future__ import annotations

import json
import math
import random

import pytest

from explaind.server.batch.json_lines import dumps_line


def _random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.gauss(0, 1) * 10 ** rng.randint(-30, 30)
    if kind == 1:
        return rng.randint(-2 ** 70, 2 ** 70)            # some beyond 64 bits
    if kind == 2:
        return rng.choice([True, False, None, 0.0, -0.0, 5e-324, 1.7976931348623157e308])
    if kind == 3:
        return "".join(rng.choice("ab\"\\\n\t/é€😀\x00null") for _ in range(rng.randrange(8)))
    if kind == 4:
        return rng.randint(-10, 10)
    if kind == 5:
        return float(rng.randint(-3, 3))
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {f"k{i}{rng.choice(['', 'é', ' '])}": _random_value(rng, depth + 1) for i in range(rng.randrange(5))}


def test_lines_read_back_as_json_dumps_reads_back():
    rng = random.Random(7)
    for _ in range(3000):
        line = {"instance": _random_value(rng), "prediction": _random_value(rng), "explanation": _random_value(rng)}
        written = dumps_line(line)
        assert isinstance(written, bytes) and b"\n" not in written
        assert json.loads(written) == json.loads(json.dumps(line)), line


def test_a_line_of_finite_numbers_is_compact_and_exact():
    line = {"instance": {"features": [0.1, -2.5e-7, 1e16, 3]}, "prediction": [1 / 3],
            "explanation": {"attributions": [{"outputIndex": [1], "featureAttributions": {"features": [-0.0]}}]}}
    written = dumps_line(line)
    assert b" " not in written
    back = json.loads(written)
    assert back == line and math.copysign(1, back["explanation"]["attributions"][0]["featureAttributions"][
        "features"][0]) < 0                                     # -0.0 kept, as json writes it
    assert list(back) == ["instance", "prediction", "explanation"]      # keys in the order given


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["prediction", "nested", "instance"])
def test_a_non_finite_number_is_a_value_error_not_null(bad, where):
    line = {"instance": [1.0], "prediction": 0.5}
    if where == "prediction":
        line["prediction"] = bad
    elif where == "nested":
        line["explanation"] = {"attributions": [{"featureAttributions": {"x": [0.0, bad]}}]}
    else:
        line["instance"] = {"a": {"b": [bad]}}
    with pytest.raises(ValueError):
        dumps_line(line)


@pytest.mark.parametrize("value", [
    2 ** 64, -(2 ** 63) - 1, 10 ** 40,          # beyond what orjson writes
    "\ud800", "x\udfffy",                       # lone surrogates: orjson refuses them, json escapes them
    None, [None, "null"], "nullable", {"null": 1},
])
def test_what_orjson_refuses_or_writes_as_null_is_written_by_json(value):
    line = {"instance": value, "prediction": 1.0}
    written = dumps_line(line)
    assert json.loads(written) == json.loads(json.dumps(line))
    if isinstance(value, int):
        assert json.loads(written)["instance"] == value        # exactly, not as a double


def test_deep_nesting_is_written_as_json_writes_it():
    deep = 1.0
    for _ in range(300):                        # beyond orjson's depth limit, within json's
        deep = [deep]
    assert json.loads(dumps_line({"instance": deep})) == {"instance": deep}
