"""Reading ExplainRequest instances: the EMBEDDINGS fast paths agree with the generic one."""
import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2

from explaind.server.serving.requests import Limits, parse_instances
from explaind.server.errors import InvalidArgument


def _values(*documents):
    return [json_format.ParseDict(d, struct_pb2.Value()) for d in documents]


@pytest.mark.parametrize("dimensions", [3, 63, 64, 128, 1000])
def test_bare_embeddings_read_exactly_whatever_their_size(dimensions):
    vector = np.random.default_rng(dimensions).normal(size=dimensions)
    (bare, wrapped) = parse_instances(_values(vector.tolist(), {"embedding": vector.tolist(), "id": "q"}),
                                      None, True, Limits())
    np.testing.assert_array_equal(bare.embedding, vector.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(wrapped.embedding, np.float32), vector.astype(np.float32))
    assert bare.id is None and wrapped.id == "q"


@pytest.mark.parametrize("dimensions", [8, 128])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e39])
def test_non_finite_embeddings_are_invalid_argument_naming_the_instance(dimensions, bad):
    vector = [0.5] * dimensions
    vector[dimensions // 2] = bad
    value = struct_pb2.Value()
    value.list_value.values.extend(struct_pb2.Value(number_value=x) for x in vector)
    with pytest.raises(InvalidArgument) as err:
        parse_instances(_values([0.0] * dimensions) + [value], None, True, Limits())
    assert err.value.field == "instances[1]"


# --- the EMBEDDINGS fast path (values.number_list) against the parser it replaced ---

def _parse_before(value: struct_pb2.Value):
    """parse_instances' EMBEDDINGS reading before number_list, kept as the oracle:
    to_array for regular finite arrays of 64 numbers or more, then an element walk
    for any flat list of numbers, else the generic JSON path."""
    from explaind.client.values import to_array, to_python
    from explaind.server.runtime.instances import Instance, parse_instance

    def embedding(vector):
        if not np.isfinite(vector).all():
            raise InvalidArgument("the embedding holds NaN or infinity (or a value beyond float32)",
                                  field="instances[0]")
        return Instance(inputs=None, embedding=vector, id=None, restricts="", crowding_tag=None)

    array = to_array(value)
    with np.errstate(over="ignore"):
        if array is not None and array.ndim == 1:
            return embedding(array.astype(np.float32))
        if value.WhichOneof("kind") == "list_value" and all(
                x.WhichOneof("kind") == "number_value" for x in value.list_value.values):
            values = value.list_value.values
            return embedding(np.fromiter((x.number_value for x in values), dtype=np.float32, count=len(values)))
    try:
        python = to_python(value)
    except ValueError as e:
        raise InvalidArgument(str(e), field="instances[0]") from None
    return parse_instance(python, None, True, field="instances[0]")


def _outcome(parse, value):
    """What a parser makes of one instance: its embedding's float32 bits, or the error it raises."""
    try:
        instance = parse(value)
    except InvalidArgument as e:
        return ("InvalidArgument", e.field, str(e))
    embedding = instance.embedding
    if isinstance(embedding, np.ndarray):
        return ("embedding", embedding.dtype.str, embedding.shape, embedding.tobytes(), instance.id)
    return ("other", repr(instance))


def _assert_same_as_before(value: struct_pb2.Value):
    def now(v):
        return parse_instances([v], None, True, Limits())[0]
    assert _outcome(now, value) == _outcome(_parse_before, value)


from hypothesis import given, settings, strategies as st  # noqa: E402

any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
scalars = st.none() | st.booleans() | any_float | st.integers(-2**60, 2**60).map(float) | st.text(max_size=3)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6)
                         | st.dictionaries(st.sampled_from(["embedding", "id", "x"]), inner, max_size=3),
                         max_leaves=30)


def _value_of(document) -> struct_pb2.Value:
    value = struct_pb2.Value()
    if isinstance(document, list):
        value.list_value.SetInParent()
        for item in document:
            value.list_value.values.append(_value_of(item))
    elif isinstance(document, dict):
        value.struct_value.SetInParent()
        for key, item in document.items():
            value.struct_value.fields[key].CopyFrom(_value_of(item))
    elif document is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(document, bool):
        value.bool_value = document
    elif isinstance(document, float):
        value.number_value = document          # NaN and infinities too: a hostile client can send them
    else:
        value.string_value = document
    return value


@settings(max_examples=400, deadline=None)
@given(documents)
def test_embeddings_read_as_before_on_any_value(document):
    _assert_same_as_before(_value_of(document))


@settings(max_examples=200, deadline=None)
@given(st.lists(any_float | st.floats(-1e39, 1e39), min_size=0, max_size=200))
def test_number_lists_of_any_length_and_value_read_as_before(numbers):
    _assert_same_as_before(_value_of([float(x) for x in numbers]))


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 130), st.data())
def test_damaged_wire_bytes_read_as_before(count, data):
    """Bytes a hostile client could send: a valid number list with a byte changed,
    cut, inserted, or an unknown field appended to the list or to an entry."""
    good = bytearray(_value_of([float(i) + 0.5 for i in range(count)]).SerializeToString())
    kind = data.draw(st.sampled_from(["flip", "cut", "insert", "unknown_in_list", "unknown_in_entry"]))
    at = data.draw(st.integers(0, len(good) - 1))
    byte = data.draw(st.integers(0, 255))
    if kind == "flip":
        good[at] = byte
    elif kind == "cut":
        del good[at]
    elif kind == "insert":
        good.insert(at, byte)
    elif kind == "unknown_in_list":      # field 15 (varint) inside the ListValue: lengths grow by 2
        good = bytearray(_value_of([float(i) for i in range(count)]).list_value.SerializeToString() + b"\x78\x01")
        good = bytearray(b"\x32" + _encode_varint(len(good)) + good)
    else:                                # field 15 inside the first entry's Value
        entry = struct_pb2.Value(number_value=1.0).SerializeToString() + b"\x78\x01"
        rest = _value_of([float(i) for i in range(count)]).list_value.SerializeToString()
        body = b"\x0a" + _encode_varint(len(entry)) + entry + rest
        good = bytearray(b"\x32" + _encode_varint(len(body)) + body)
    try:
        value = struct_pb2.Value.FromString(bytes(good))
    except Exception:  # noqa: BLE001 - bytes the server's decoder refuses before parsing instances
        return
    _assert_same_as_before(value)


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)
