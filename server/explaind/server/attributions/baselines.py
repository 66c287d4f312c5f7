"""Baselines from metadata (or a request override): one or several per input, default zeros.

A baseline value is a scalar (broadcast to the input's shape) or a nested list
of the input's shape. Several baselines are averaged over by every method.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from google.protobuf import json_format

from ..errors import InvalidArgument

MAX_BASELINES = 10


def baseline_array(value, shape: tuple[int, ...], dtype, field: str) -> np.ndarray:
    """One baseline value (python scalar / nested list) as an array of the input's per-instance shape."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"baseline must be numeric: {error}", field=field) from None
    if array.ndim == 0:
        return np.full(shape, array, dtype=dtype)
    if array.shape == tuple(shape):
        return array.astype(dtype)
    if array.size == int(np.prod(shape, dtype=np.int64)):
        return array.reshape(shape).astype(dtype)
    raise InvalidArgument(f"baseline of shape {list(array.shape)} does not match the input's shape {list(shape)}", field=field)


def values_to_python(values) -> list:
    """Repeated google.protobuf.Value -> python values."""
    return [json_format.MessageToDict(v) for v in values]


def build_baselines(
    shapes: Mapping[str, tuple[int, ...]],
    dtypes: Mapping[str, np.dtype],
    per_input: Mapping[str, tuple[Sequence, str]],
) -> list[dict[str, np.ndarray]]:
    """Baseline dicts over the explained inputs.

    per_input maps an input name to (its baseline values, the field they came
    from); inputs without values get zeros. Every input that has values must
    have the same count (<= 10); an input with none repeats zeros.
    """
    counts = {name: len(values) for name, (values, _) in per_input.items() if len(values)}
    for name, count in counts.items():
        if count > MAX_BASELINES:
            raise InvalidArgument(f"at most {MAX_BASELINES} baselines per input, got {count}", field=per_input[name][1])
    if len(set(counts.values())) > 1:
        name = sorted(counts)[-1]
        raise InvalidArgument(f"every input needs the same number of baselines, got {counts}", field=per_input[name][1])
    count = next(iter(counts.values()), 1)
    baselines = []
    for position in range(count):
        baseline = {}
        for name, shape in shapes.items():
            values, field = per_input.get(name, ((), ""))
            if len(values):
                baseline[name] = baseline_array(values[position], shape, dtypes[name], f"{field}[{position}]")
            else:
                baseline[name] = np.zeros(shape, dtype=dtypes[name])
        baselines.append(baseline)
    return baselines
