"""The fast Value codec against json_format, its oracle, on every kind of input."""
import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import given, settings, strategies as st

from explaind.client import values

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
json_like = st.recursive(
    st.none() | st.booleans() | finite | st.integers(-2**53, 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=40)


@st.composite
def number_arrays(draw):
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    size = int(np.prod(shape))
    numbers = draw(st.lists(finite | st.integers(-2**40, 2**40), min_size=size, max_size=size))
    return np.array(numbers, dtype=np.float64).reshape(shape)


def _oracle(x):
    return json_format.ParseDict(x, struct_pb2.Value())


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_any_json_value_encodes_and_decodes_like_json_format(x):
    assert values.to_value(x) == _oracle(x)
    assert values.to_python(_oracle(x)) == json_format.MessageToDict(_oracle(x))


@settings(max_examples=200, deadline=None)
@given(number_arrays())
def test_number_arrays_take_the_fast_path_and_agree(array):
    nested = array.tolist()
    expected = _oracle(nested)
    assert values.to_value(array) == expected
    assert values.to_value(nested) == expected
    decoded = values.to_python(expected)
    assert decoded == json_format.MessageToDict(expected)
    assert np.array_equal(np.asarray(decoded), array)
    # Negative zeros survive (the sign is in the bytes).
    assert np.array_equal(np.signbit(np.asarray(decoded)), np.signbit(array))


def test_large_image_round_trip_is_bitwise_exact():
    image = np.random.default_rng(0).normal(size=(64, 64, 3))
    image[0, 0, 0] = -0.0
    image[1, 1, 1] = 5e-324          # subnormal
    image[2, 2, 2] = 1e308
    value = values.to_value(image)
    assert value == _oracle(image.tolist())
    assert np.array_equal(values.to_array(value), image)
    assert values.to_python(value) == image.tolist()
    big_ints = np.arange(2**40, 2**40 + 100).reshape(10, 10)
    assert values.to_value(big_ints) == _oracle(big_ints.tolist())


@pytest.mark.parametrize("x", [
    [[1.0] * 70, [1.0] * 69],                       # ragged
    [[1.0] * 70, "a"],                              # mixed kinds
    [[True] * 70],                                  # bools are not numbers
    [[1.0] * 35 + [None] + [1.0] * 34],            # a null inside
    [[1.0] * 70, [[1.0] * 70]],                     # deeper on one side
    [[]] * 70,                                      # empty lists
])
def test_irregular_lists_fall_back_and_still_agree(x):
    expected = _oracle(x)
    assert values.to_value(x) == expected
    assert values.to_array(expected) is None
    assert values.to_python(expected) == json_format.MessageToDict(expected)


def test_nan_is_refused_on_decoding_as_json_format_does():
    value = values.to_value(np.full((10, 10), np.nan))
    assert value == _oracle(np.full((10, 10), np.nan).tolist())
    with pytest.raises(ValueError):
        json_format.MessageToDict(value)
    with pytest.raises(ValueError, match="not a JSON number"):
        values.to_python(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=300))
def test_number_list_reads_any_flat_list_of_numbers_bit_for_bit(numbers):
    value = struct_pb2.Value()
    value.list_value.SetInParent()
    value.list_value.values.extend(struct_pb2.Value(number_value=x) for x in numbers)
    got = values.number_list(value)
    want = np.array([x.number_value for x in value.list_value.values], dtype=np.float64)
    assert got is not None and got.shape == want.shape
    assert got.tobytes() == want.tobytes()          # NaN payloads, -0.0 and infinities included


@pytest.mark.parametrize("x", [[[1.0, 2.0]], [1.0, "a"], [1.0, None], [True, 1.0], {"a": 1.0}, 1.0, "s", None,
                               [[1.0] * 70, [1.0] * 70]])
def test_number_list_is_none_for_anything_but_a_flat_list_of_numbers(x):
    assert values.number_list(_oracle(x)) is None
