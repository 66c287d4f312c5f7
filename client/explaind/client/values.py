"""Fast conversion between google.protobuf.Value and Python / numpy values.

`json_format.ParseDict` and `MessageToDict` walk a Value one element at a
time in Python: about 2 us per number, so a 64x64x3 image costs 25 ms each
way, more than the attribution itself. A regular array of numbers has a
fixed wire layout (every number a `Value{number_value}` of 9 bytes inside a
`ListValue` entry of 11), so here it is written and read with numpy in one
pass over the serialized bytes. Anything else (strings, bools, nulls, ragged
lists, structs) takes the plain recursive path.

`to_value(x)` equals `json_format.ParseDict(x, Value())` and `to_python(v)`
equals `json_format.MessageToDict(v)` for every input; only the speed differs.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from google.protobuf import struct_pb2

# Below this many numbers the plain path is as fast (measured: at 16 numbers the bytes
# path writes a Value 5x and reads one 2x faster; they cross between 4 and 8).
FAST_MIN_NUMBERS = 8
# A list takes the bytes path from more numbers: numpy reads a list mixing bools with
# numbers as numbers, where json_format keeps the bools (still so from this many on).
FAST_MIN_LIST_NUMBERS = 64

_NUMBER_TAG = 0x11       # Value.number_value: field 2, fixed64
_LIST_VALUE_TAG = 0x32   # Value.list_value: field 6, length-delimited
_ENTRY_TAG = 0x0A        # ListValue.values: field 1, length-delimited
# One number as a ListValue entry: entry tag, length 9, number tag, 8 bytes.
_NUMBER_ENTRY = np.dtype([("head", "u1", (3,)), ("number", "<f8")])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _rows_with_prefix(prefix: bytes, rows: np.ndarray) -> np.ndarray:
    """rows: (n, m) uint8 -> (n, len(prefix) + m), each row led by `prefix`."""
    head = np.broadcast_to(np.frombuffer(prefix, np.uint8), (rows.shape[0], len(prefix)))
    return np.concatenate([head, rows], axis=1)


def _array_value_bytes(array: np.ndarray) -> bytes:
    """Serialized Value holding `array` (float64, ndim >= 1, no zero-sized axis) as nested lists."""
    innermost = array.reshape(-1, array.shape[-1])
    entries = np.empty(innermost.shape, _NUMBER_ENTRY)
    entries["head"] = (_ENTRY_TAG, 9, _NUMBER_TAG)
    entries["number"] = innermost
    rows = entries.view(np.uint8).reshape(innermost.shape[0], -1)      # one ListValue per row
    for outer in reversed(array.shape[:-1]):
        # Each row becomes a Value{list_value}, then an entry of the enclosing ListValue.
        rows = _rows_with_prefix(bytes([_LIST_VALUE_TAG]) + _varint(rows.shape[1]), rows)
        rows = _rows_with_prefix(bytes([_ENTRY_TAG]) + _varint(rows.shape[1]), rows)
        rows = rows.reshape(-1, outer * rows.shape[1])
    return bytes([_LIST_VALUE_TAG]) + _varint(rows.shape[1]) + rows.tobytes()


def _numeric_array(x) -> np.ndarray | None:
    """x as a float64 array when it is a regular array of numbers (not bools), else None."""
    if isinstance(x, np.ndarray):
        array, minimum = x, FAST_MIN_NUMBERS
    elif isinstance(x, (list, tuple)) and x:
        try:
            array, minimum = np.asarray(x), FAST_MIN_LIST_NUMBERS
        except ValueError:        # ragged
            return None
    else:
        return None
    if array.dtype.kind not in "iuf" or array.ndim == 0 or 0 in array.shape or array.size < minimum:
        return None
    return array.astype(np.float64, copy=False)


def to_value(x) -> struct_pb2.Value:
    """A JSON-like value (dicts, lists, numbers, strings, bools, None) or numpy array -> Value."""
    array = _numeric_array(x)
    if array is not None:
        return struct_pb2.Value.FromString(_array_value_bytes(array))
    value = struct_pb2.Value()
    _fill(value, x)
    return value


def _fill(value: struct_pb2.Value, x) -> None:
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        x = x.tolist()
    if x is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(x, bool):
        value.bool_value = x
    elif isinstance(x, (int, float)):
        value.number_value = x
    elif isinstance(x, str):
        value.string_value = x
    elif isinstance(x, dict):
        fields = value.struct_value.fields
        value.struct_value.SetInParent()
        for key, item in x.items():
            if not isinstance(key, str):
                raise TypeError(f"struct keys must be strings, got {type(key).__name__}")
            fields[key].CopyFrom(to_value(item))
    elif isinstance(x, (list, tuple)):     # not a number array: to_value took those already
        value.list_value.SetInParent()
        for item in x:
            value.list_value.values.add().CopyFrom(to_value(item))
    else:
        raise TypeError(f"cannot put a {type(x).__name__} into a google.protobuf.Value")


def _shape_of_numbers(value: struct_pb2.Value) -> tuple[int, ...] | None:
    """The shape a Value would have as a regular number array, judged by its first
    elements (the bytes check confirms the rest); None when it is not a list."""
    shape = []
    while value.WhichOneof("kind") == "list_value":
        values = value.list_value.values
        if not values:
            return None
        shape.append(len(values))
        value = values[0]
    if value.WhichOneof("kind") != "number_value" or not shape:
        return None
    return tuple(shape)


@functools.lru_cache(maxsize=256)
def _layout(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The wire bytes of a zero array of `shape` and the mask of its number bytes."""
    expected = np.frombuffer(_array_value_bytes(np.zeros(shape)), np.uint8)
    # A number entry is (entry tag, 9, number tag, 8 bytes): no other run of the
    # layout has length byte 9 after an entry tag (lists are longer, lengths come
    # after tags), and the zero numbers contain no tag bytes.
    tags = np.flatnonzero(expected[:-8] == _NUMBER_TAG)
    tags = tags[(tags >= 2) & (expected[tags - 2] == _ENTRY_TAG) & (expected[tags - 1] == 9)]
    numbers = np.zeros(len(expected), bool)
    numbers[(tags[:, None] + 1 + np.arange(8)).ravel()] = True
    return expected, numbers


def to_array(value: struct_pb2.Value) -> np.ndarray | None:
    """A Value that is a regular array of finite numbers -> a read-only float64
    array over its wire bytes; anything else -> None."""
    shape = _shape_of_numbers(value)
    if shape is None or math.prod(shape) < FAST_MIN_NUMBERS:
        return None
    expected, numbers = _layout(shape)
    data = value.SerializeToString()
    if len(data) != len(expected):
        return None
    got = np.frombuffer(data, np.uint8)
    if not np.array_equal(got[~numbers], expected[~numbers]):
        return None     # ragged deeper down, or not all numbers
    array = got[numbers].view("<f8").reshape(shape)
    # MessageToDict refuses NaN and infinities; leave them to it so both agree.
    return array if np.isfinite(array).all() else None


_NUMBER_HEAD_BYTES = (bytes([_ENTRY_TAG]), bytes([9]), bytes([_NUMBER_TAG]))


def number_list(value: struct_pb2.Value) -> np.ndarray | None:
    """A Value that is a flat list of numbers (any length, NaN and infinities
    included) -> a float64 view over its wire bytes; anything else -> None.

    The serving hot path of EMBEDDINGS requests: one serialization and one numpy
    comparison, where to_array first walks the nesting and builds the expected
    layout. The bytes decide alone: a list_value tag, the list's length, then
    entries of exactly (entry tag, 9, number tag, 8 bytes); a nested list, another
    kind, an unknown field or a stray byte breaks the layout, and gets None."""
    data = value.SerializeToString()
    if len(data) < 2 or data[0] != _LIST_VALUE_TAG:
        return None
    length, shift, at = 0, 0, 1
    while at < len(data) and shift < 64:          # the list's length, a varint
        byte = data[at]
        at += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    else:
        return None
    step = _NUMBER_ENTRY.itemsize
    if length != len(data) - at or length % step:
        return None
    count = length // step
    if count == 0:
        return np.empty(0)
    # Every entry's three head bytes, compared as strided byte slices (C loops, no array temporaries).
    for offset, byte in enumerate(_NUMBER_HEAD_BYTES):
        if data[at + offset::step] != byte * count:
            return None
    return np.ndarray((count,), "<f8", data, offset=at + 3, strides=(step,))


def to_python(value: struct_pb2.Value):
    """Value -> dicts, lists, floats, strings, bools, None (as json_format.MessageToDict)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        if not np.isfinite(number):
            raise ValueError(f"{number} is not a JSON number")
        return number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: to_python(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        array = to_array(value)
        if array is not None:
            return array.tolist()
        return [to_python(item) for item in value.list_value.values]
    return None
