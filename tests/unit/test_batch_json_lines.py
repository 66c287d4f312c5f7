"""batch/json_lines: dumps_line writes the same JSON as json.dumps for every line,
fast or not (ValueError for the numbers JSON has no word for, as
json.dumps(allow_nan=False)); loads_line reads every line as json.loads does,
values, types and refusals alike."""
from __future__ import annotations

import json
import math
import random

import pytest

from explaind.server.batch.json_lines import dumps_line, loads_line


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


def _json_reads(line: str):
    """The oracle: json.loads refusing NaN and infinity literals, as the batch reader always did."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(line, parse_constant=refuse)


def _same(a, b) -> bool:
    """Equal values of equal types all the way down (1 and 1.0 differ; -0.0 and 0.0 differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b) or (math.isnan(a) and math.isnan(b))
    return a == b


def _number_text(rng: random.Random) -> str:
    """Number spellings a file may hold: integers of 1 to 25 digits, decimals of up to 22
    significant digits, exponents to +-400."""
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25))).lstrip("0") or "0"
    sign = rng.choice(["", "-"])
    kind = rng.randrange(4)
    if kind == 0:
        return sign + digits
    point = rng.randint(0, len(digits))
    whole, fraction = digits[:point] or "0", digits[point:] or "0"
    text = f"{sign}{whole}.{fraction}"
    return text if kind == 1 else f"{text}{rng.choice('eE')}{rng.choice(['', '+', '-'])}{rng.randint(0, 400)}"


def test_lines_read_as_json_reads_them():
    rng = random.Random(11)
    for _ in range(3000):
        value = {"instance": _random_value(rng), "key": _random_value(rng)}
        line = json.dumps(value, ensure_ascii=rng.random() < 0.5) + rng.choice(["", "\n", " \r\n"])
        assert _same(loads_line(line), _json_reads(line)), line
    for _ in range(5000):
        line = "[" + ",".join(_number_text(rng) for _ in range(rng.randint(1, 4))) + "]"
        assert _same(loads_line(line), _json_reads(line)), line


@pytest.mark.parametrize("line", [
    "18446744073709551616", "-9223372036854775809", "123456789012345678901234567890",
    '{"id": 99999999999999999999999, "x": [1.5]}', "18446744073709551615", "9223372036854775807",
    "1e400", "-1e400", "1.5e-400", '"\\ud800"', '{"a": "\\udfff\\ud800"}', '{"a": 1, "a": 2}',
    '"a\u2028b"', '["\ud800 raw"]', "  [1, 2]  ", "[" * 1100 + "]" * 1100])
def test_lines_orjson_reads_otherwise_read_as_json_reads_them(line):
    """Integers beyond 64 bits stay exact, 1e400 is infinity, lone surrogates are kept, the last
    of a repeated key wins, and deep nesting answers what json answers."""
    try:
        expected = _json_reads(line)
    except RecursionError:
        with pytest.raises(RecursionError):
            loads_line(line)
        return
    assert _same(loads_line(line), expected)


@pytest.mark.parametrize("line", ["NaN", "[1, Infinity]", '{"x": -Infinity}', "{", "[1,]", "01", '{"a" 1}',
                                  "\ufeff[1]", "[1] x", '"\x00"', "", "nul", "[1e5.5]"])
def test_what_json_refuses_is_refused_with_json_s_message(line):
    with pytest.raises(ValueError) as ours:
        loads_line(line)
    with pytest.raises(ValueError) as theirs:
        _json_reads(line)
    assert str(ours.value) == str(theirs.value)
