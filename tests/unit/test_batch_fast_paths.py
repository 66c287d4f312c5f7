"""A batch job's two shortcuts past protobuf, each against the slow path it
replaces as the oracle: rows handed to the data plane as DecodedInstances read
as their google.protobuf.Value would (or take the Value), and message_dict is
json_format.MessageToDict on the Explanations the job writes."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from explaind.client.values import to_python, to_value
from explaind.server.batch.arrays import bulk_inputs
from explaind.server.batch.decoded import decoded
from explaind.server.batch.message_json import message_dict
from explaind.server.errors import InvalidArgument
from explaind.server.runtime.instances import InputSpec, batch_inputs
from explaind.server.serving.requests import DecodedInstance, Limits, parse_instances
from explaind.vertex.v1 import prediction_service_pb2 as vertex

INPUTS = frozenset({"features", "age", "name"})


def _exact(x) -> str:
    """JSON that tells 1 from 1.0 and keeps -0.0; dicts compared by content."""
    return json.dumps(x, sort_keys=True)


json_leaves = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.floats(allow_nan=True, allow_infinity=True),
                        st.integers(min_value=-2**60, max_value=2**60))
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(["a", "b", "features"]), inner, max_size=3)),
    max_leaves=20)
finite = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**53, 2**53), st.none(), st.text(max_size=3))
tabular = st.dictionaries(st.sampled_from(sorted(INPUTS)), st.one_of(finite, st.lists(finite, max_size=70),
                                                                  st.lists(st.lists(finite, max_size=3), max_size=3)))
rows = st.one_of(json_values, tabular,
                 st.dictionaries(st.sampled_from(sorted(INPUTS) + ["id", "other"]), json_values, max_size=4))


@settings(max_examples=400, deadline=None)
@given(rows)
def test_a_decoded_row_is_what_its_value_reads_as_or_it_takes_the_value(row):
    got = decoded(row, INPUTS)
    try:
        want = to_python(to_value(row))
    except (ValueError, TypeError, OverflowError):
        assert got is None          # the Value's own error is the row's
        return
    if got is not None:
        assert _exact(got.value) == _exact(want)


@pytest.mark.parametrize("row", [
    [True, 1.5] * 40,                       # a Value may read these bools as numbers
    {"features": [1.0, float("nan")]},      # non-finite: the Value path words the error
    {"features": float("inf")},
    {"features": 2**60},                    # beyond 2**53 a float may round otherwise
    {"features": {"nested": 1}},            # a dict's order is the Value map's
    {"features": [1.0], "other": 2},        # an unknown key: its error names keys in the map's order
    {"features": [1.0], "id": "x"},         # reserved keys take the Value too
    np.arange(3.0),
    (1.0, 2.0),
])
def test_rows_only_a_value_reads_exactly_take_the_value(row):
    assert decoded(row, INPUTS) is None


def test_the_data_plane_parses_a_decoded_row_as_its_value():
    row = {"features": list(np.linspace(-2, 2, 70)), "age": 41, "name": "ada"}
    by_value, = parse_instances([to_value(row)], sorted(INPUTS), False, Limits())
    by_decoded, = parse_instances([decoded(row, INPUTS)], sorted(INPUTS), False, Limits())
    assert by_value == by_decoded
    embedding = [0.5] * 8
    by_value, = parse_instances([to_value(embedding)], None, True, Limits())
    by_decoded, = parse_instances([DecodedInstance(embedding)], None, True, Limits())
    np.testing.assert_array_equal(by_value.embedding, by_decoded.embedding)
    with pytest.raises(InvalidArgument) as error:
        parse_instances([DecodedInstance({"features": [1.0], "zzz": 1.0})], sorted(INPUTS), False, Limits())
    assert error.value.field == "instances[0].zzz"


doubles = st.floats(allow_nan=True, allow_infinity=True)
numbers = st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=80)


@st.composite
def explanations(draw):
    message = vertex.Explanation()
    for _ in range(draw(st.integers(0, 3))):
        attribution = message.attributions.add(
            baseline_output_value=draw(doubles), instance_output_value=draw(doubles),
            output_index=draw(st.lists(st.integers(-2**31, 2**31 - 1), max_size=3)),
            output_display_name=draw(st.text(max_size=5)), approximation_error=draw(doubles),
            output_name=draw(st.text(max_size=5)))
        features = {name: draw(st.one_of(numbers, st.lists(numbers, min_size=1, max_size=3), doubles))
                    for name in draw(st.lists(st.text(max_size=4), max_size=3))}
        if features or draw(st.booleans()):
            attribution.feature_attributions.CopyFrom(to_value(features))
    for _ in range(draw(st.integers(0, 3))):
        message.neighbors.add(neighbor_id=draw(st.text(max_size=6)), neighbor_distance=draw(doubles))
    return message


def _outcome(fn, message):
    try:
        return "ok", _exact(fn(message))
    except Exception as e:  # noqa: BLE001 - the oracle's failure must be the fast path's
        return "error", type(e).__name__, str(e)


@settings(max_examples=300, deadline=None)
@given(explanations())
def test_message_dict_is_message_to_dict(message):
    assert _outcome(message_dict, message) == _outcome(json_format.MessageToDict, message)


def test_message_dict_on_zeros_negative_zeros_and_non_finite_doubles():
    message = vertex.Explanation()
    message.attributions.add(baseline_output_value=-0.0, instance_output_value=0.0, approximation_error=math.nan)
    message.neighbors.add(neighbor_id="n", neighbor_distance=math.inf)
    assert _exact(message_dict(message)) == _exact(json_format.MessageToDict(message))
    assert message_dict(message)["neighbors"] == [{"neighborId": "n", "neighborDistance": "Infinity"}]


SPECS = {"features": InputSpec("features", (None, 3), "float32"), "size": InputSpec("size", (None,), "float64")}
leaf = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-2**60, 2**60), st.booleans(),
                 st.none(), st.text(max_size=2))
cell = st.one_of(st.lists(leaf, min_size=2, max_size=4), st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3), leaf)
number = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**53, 2**53))
plain_row = st.fixed_dictionaries({"features": st.lists(number, min_size=3, max_size=3), "size": number})
any_row = st.one_of(st.fixed_dictionaries({"features": cell, "size": cell}), st.fixed_dictionaries({"features": cell}),
                    st.dictionaries(st.sampled_from(["features", "size", "id"]), cell, max_size=3),
                    st.lists(st.floats(-10, 10), min_size=3, max_size=3))
bulk_rows = st.one_of(st.lists(plain_row, min_size=1, max_size=6),
                      st.tuples(st.lists(plain_row, max_size=4), any_row).map(lambda t: t[0] + [t[1]]))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")    # both paths cast 1e300 to float32 alike
@settings(max_examples=400, deadline=None)
@given(bulk_rows)
def test_bulk_inputs_stack_what_the_readers_stack_or_leave_the_batch_to_them(rows):
    got = bulk_inputs(rows, SPECS)
    try:
        values = [decoded(row, frozenset(SPECS)) or to_value(row) for row in rows]
        want = batch_inputs(parse_instances(values, list(SPECS), False, Limits()), SPECS)
    except (ValueError, TypeError, OverflowError, InvalidArgument):
        assert got is None          # a row the readers refuse: they word its error
        return
    if got is not None:
        assert list(got) == list(want)
        for name in want:
            assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
            np.testing.assert_array_equal(got[name], want[name])


def test_bulk_inputs_read_plain_tabular_rows_and_refuse_the_rest():
    rows = [{"features": [1.0, -2.5, 3], "size": 0.5}, {"features": [0.0, 1e-3, 7.25], "size": -1}]
    got = bulk_inputs(rows, SPECS)
    np.testing.assert_array_equal(got["features"], np.array([[1.0, -2.5, 3], [0.0, 1e-3, 7.25]], np.float32))
    np.testing.assert_array_equal(got["size"], [0.5, -1.0])
    for bad in ({"features": [1.0, True, 3.0], "size": 0.5},       # a Value may read a bool as a number
                {"features": [1.0, 2.0, 3.0], "size": 2**60},      # past 2**53 a float may round otherwise
                {"features": [1.0, 2.0, float("inf")], "size": 0.5},
                {"features": [1.0, 2.0], "size": 0.5},             # a shape the readers refuse
                {"features": [1.0, 2.0, 3.0]},                     # a missing input
                {"features": [1.0, 2.0, 3.0], "size": 0.5, "id": "x"}):
        assert bulk_inputs(rows + [bad], SPECS) is None
