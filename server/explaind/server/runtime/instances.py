"""Instances: one JSON value per request instance or data set record.

Pure Python and numpy (no TensorFlow), so request validation and the
index-only path never pay for importing TensorFlow.

An instance is either model inputs (an object keyed by the signature's input
names, or a bare value when the signature has exactly one input) or an
embedding (a list of floats, or an object with "embedding"). Objects may also
carry the reserved keys "id", "restricts" and "crowding_tag"; "" means none.
Bytes travel as {"b64": "..."} and are decoded here.
"""
from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from explaind.server.errors import InvalidArgument

RESERVED_KEYS = ("id", "restricts", "crowding_tag", "embedding")


@dataclass
class Instance:
    inputs: dict[str, object] | None  # raw values per input name (None when embedding given)
    embedding: np.ndarray | None  # float32 (d,) when the record/instance is an embedding
    id: str | None
    restricts: object  # raw JSON restricts value (list or ""), parsed by the index package
    crowding_tag: str | None  # "" -> None


@dataclass(frozen=True)
class InputSpec:
    """One signature input. `shape` is the signature's full shape, batch
    dimension first (usually None); `dtype` a numpy dtype name or "string"."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


def parse_instance(value: Any, input_names: list[str] | None, embeddings: bool, field: str) -> Instance:
    """Parse one instance (see the module docstring). `input_names` None means
    an index-only model (no SavedModel): only embeddings are accepted."""
    if embeddings or input_names is None:
        if isinstance(value, (list, tuple)):
            return Instance(None, _embedding(value, field), None, None, None)
        if isinstance(value, dict):
            if "embedding" not in value:
                raise InvalidArgument(
                    "expected an embedding (a list of floats, or an object with "
                    + ("'embedding')" if embeddings else "'embedding'), as the model has no SavedModel"),
                    field=field,
                )
            return _object_instance(value, input_names, field)
        raise InvalidArgument(
            f"expected an embedding (a list of floats), got {_type_name(value)}", field=field
        )
    if isinstance(value, dict) and _is_keyed(value, input_names):
        return _object_instance(value, input_names, field)
    if len(input_names) == 1:
        # A bare value for the model's only input.
        name = input_names[0]
        return Instance({name: _decode_b64(value, f"{field}")}, None, None, None, None)
    if isinstance(value, dict):
        return _object_instance(value, input_names, field)
    raise InvalidArgument(
        f"expected an object keyed by the model's inputs {sorted(input_names)}, got {_type_name(value)}",
        field=field,
    )


def _is_keyed(value: dict, input_names: list[str]) -> bool:
    # {"b64": ...} is a bare bytes value unless the model has an input named "b64".
    if set(value) == {"b64"} and "b64" not in input_names:
        return False
    return True


def _object_instance(value: dict, input_names: list[str] | None, field: str) -> Instance:
    for key in value:
        if not isinstance(key, str):
            raise InvalidArgument(f"keys must be strings, got {key!r}", field=field)
    known = set(RESERVED_KEYS) | set(input_names or ())
    unknown = [k for k in value if k not in known]
    if unknown:
        expected = sorted(input_names or ()) + list(RESERVED_KEYS)
        raise InvalidArgument(
            f"unknown key {unknown[0]!r}; expected one of {expected}", field=f"{field}.{unknown[0]}"
        )
    id_ = _id(value.get("id"), f"{field}.id")
    tag = _crowding_tag(value.get("crowding_tag"), f"{field}.crowding_tag")
    restricts = value.get("restricts")
    if restricts is not None and not isinstance(restricts, (list, str, dict)):
        raise InvalidArgument(
            f"restricts must be a list of namespaces, got {_type_name(restricts)}", field=f"{field}.restricts"
        )
    if "embedding" in value:
        # A record carrying its embedding is indexed as it is; the model is not run.
        emb = _embedding(value["embedding"], f"{field}.embedding")
        return Instance(None, emb, id_, restricts, tag)
    if input_names is None:
        raise InvalidArgument("expected an 'embedding'", field=f"{field}.embedding")
    inputs: dict[str, object] = {}
    for name in input_names:
        if name not in value:
            raise InvalidArgument(f"missing model input {name!r}", field=f"{field}.{name}")
        inputs[name] = _decode_b64(value[name], f"{field}.{name}")
    return Instance(inputs, None, id_, restricts, tag)


def _id(v: Any, field: str) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise InvalidArgument("id must be a string or a number", field=field)
    if isinstance(v, float):
        # JSON through google.protobuf.Value turns every number into a double.
        if not math.isfinite(v):
            raise InvalidArgument("id must be finite", field=field)
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, np.integer):
        return str(int(v))
    raise InvalidArgument(f"id must be a string or a number, got {_type_name(v)}", field=field)


def _crowding_tag(v: Any, field: str) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, bool) or not isinstance(v, (str, int, float, np.integer)):
        raise InvalidArgument(f"crowding_tag must be a string, got {_type_name(v)}", field=field)
    return _id(v, field)


def _embedding(v: Any, field: str) -> np.ndarray:
    if isinstance(v, np.ndarray):
        arr = v
    else:
        if not isinstance(v, (list, tuple)) or any(
            isinstance(x, bool) or not isinstance(x, (int, float, np.number)) for x in v
        ):
            raise InvalidArgument("embedding must be a list of numbers", field=field)
        arr = np.asarray(v, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidArgument(f"embedding must be a non-empty list of numbers, got shape {arr.shape}", field=field)
    if arr.dtype.kind not in "iuf":
        raise InvalidArgument("embedding must be a list of numbers", field=field)
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument("embedding values must be finite", field=field)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _decode_b64(v: Any, field: str) -> Any:
    """Replace every {"b64": "..."} (also nested in lists) with bytes."""
    if isinstance(v, dict):
        if set(v) != {"b64"} or not isinstance(v["b64"], str):
            raise InvalidArgument('an object value must be {"b64": "<base64 text>"}', field=field)
        text = "".join(v["b64"].split())
        text += "=" * (-len(text) % 4)  # some clients drop the padding
        # Standard alphabet, or the URL-safe one some clients send.
        altchars = b"-_" if ("-" in text or "_" in text) else None
        try:
            return base64.b64decode(text, altchars=altchars, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InvalidArgument(f"invalid base64: {e}", field=field) from None
    if isinstance(v, list):
        if any(isinstance(x, (dict, list)) for x in v):
            return [_decode_b64(x, field) for x in v]
    return v


def _type_name(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__
    )


# ---------------------------------------------------------------- batching


class ShapeMismatch(InvalidArgument):
    """Instances of one batch whose shapes differ (the signature has a free dimension)."""


def batch_inputs(
    instances: list[Instance], input_specs: dict[str, InputSpec], field_prefix: str = "instances"
) -> dict[str, np.ndarray]:
    """Stack each input across instances into one array of the signature's
    dtype and shape (batch dimension first). String inputs become object
    arrays of bytes. Errors name f"{field_prefix}[i].{name}"."""
    out: dict[str, np.ndarray] = {}
    for i, inst in enumerate(instances):
        if inst.inputs is None:
            raise InvalidArgument("instance carries an embedding, not model inputs", field=f"{field_prefix}[{i}]")
    for name, spec in input_specs.items():
        rows = []
        for i, inst in enumerate(instances):
            field = f"{field_prefix}[{i}].{name}"
            if name not in inst.inputs:
                raise InvalidArgument(f"missing model input {name!r}", field=field)
            rows.append(_to_array(inst.inputs[name], spec, field))
        if rows:
            first = rows[0].shape
            for i, r in enumerate(rows):
                if r.shape != first:
                    raise ShapeMismatch(
                        f"shape {r.shape} differs from instances[0]'s {first}; a batch needs one shape",
                        field=f"{field_prefix}[{i}].{name}",
                    )
            out[name] = np.stack(rows) if spec.dtype != "string" else _stack_objects(rows)
        else:
            per = tuple(d or 0 for d in spec.shape[1:])
            out[name] = np.zeros((0,) + per, dtype=object if spec.dtype == "string" else spec.dtype)
    return out


def _stack_objects(rows: list[np.ndarray]) -> np.ndarray:
    arr = np.empty((len(rows),) + rows[0].shape, dtype=object)
    for i, r in enumerate(rows):
        arr[i, ...] = r  # element-wise, also for 0-d rows
    return arr


def _to_array(value: Any, spec: InputSpec, field: str) -> np.ndarray:
    expected = spec.shape[1:]
    if spec.dtype == "string":
        arr = _string_array(value, field)
    else:
        arr = _numeric_array(value, spec.dtype, field)
    if not _shape_ok(arr.shape, expected):
        # A scalar or flat list whose size fits a fully known shape is reshaped
        # (CSV cells, flattened tf.train.Example features).
        if (
            arr.ndim <= 1
            and all(d is not None for d in expected)
            and arr.size == int(np.prod(expected, dtype=np.int64))
        ):
            return arr.reshape(expected)
        raise InvalidArgument(
            f"shape {arr.shape} does not match the input's shape {_fmt_shape(expected)}", field=field
        )
    return arr


def _shape_ok(shape: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))


def _fmt_shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _numeric_array(value: Any, dtype: str, field: str) -> np.ndarray:
    target = np.dtype(dtype)
    try:
        raw = np.asarray(value)
    except ValueError as e:  # ragged nested lists
        raise InvalidArgument(f"not a rectangular array of numbers: {e}", field=field) from None
    if raw.dtype == object and raw.size and not all(_is_number(x) for x in raw.flat):
        raise InvalidArgument(f"expected numbers ({dtype}), got a nested list with other values", field=field)
    if raw.dtype.kind in "USO" and raw.dtype != object:
        raise InvalidArgument(f"expected numbers ({dtype}), got strings", field=field)
    if raw.dtype.kind == "O":
        raw = raw.astype(np.float64)
    if target.kind in "iu" and raw.dtype.kind == "f":
        # JSON numbers arrive as doubles; only whole numbers fit an integer input.
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise InvalidArgument(f"expected whole numbers ({dtype})", field=field)
    if target.kind == "b" and raw.dtype.kind not in "bui":
        raise InvalidArgument("expected booleans", field=field)
    try:
        return raw.astype(target)
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidArgument(f"cannot convert to {dtype}: {e}", field=field) from None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.number, np.bool_)) and not isinstance(x, str)


def _string_array(value: Any, field: str) -> np.ndarray:
    def enc(x: Any) -> bytes:
        if isinstance(x, bytes):
            return x
        if isinstance(x, str):
            return x.encode("utf-8")
        raise InvalidArgument(f"expected a string or bytes, got {_type_name(x)}", field=field)

    if isinstance(value, (str, bytes)):
        arr = np.empty((), dtype=object)
        arr[()] = enc(value)
        return arr
    if not isinstance(value, (list, tuple)):
        raise InvalidArgument(f"expected a string or bytes, got {_type_name(value)}", field=field)
    shape = _nested_shape(value, field)
    arr = np.empty(shape, dtype=object)
    flat = arr.reshape(-1)
    for i, x in enumerate(_flatten(value)):
        flat[i] = enc(x)
    return arr


def _nested_shape(value: Any, field: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    if not value:
        return (0,)
    shapes = {_nested_shape(x, field) for x in value}
    if len(shapes) != 1:
        raise InvalidArgument("not a rectangular nested list", field=field)
    return (len(value),) + shapes.pop()


def _flatten(value: Any):
    if isinstance(value, (list, tuple)):
        for x in value:
            yield from _flatten(x)
    else:
        yield value
