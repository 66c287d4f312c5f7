"""A row read from JSON handed to the data plane as it is (a DecodedInstance),
where its google.protobuf.Value would only be built to be walked back: on a
small tabular row that round trip costs more than the row's explanation.

Only rows whose reading cannot tell the two apart go this way: a dict of the
model's inputs (the data plane reads a dict by its input names, never by its
order, which a Value's map does not keep), and below it lists, strings, None
and finite numbers (as the floats a Value holds). Anything else (a bool in a
list, which a Value may turn into a number; a big or non-finite number; an
unknown or reserved key, whose errors name keys in the Value's order) takes
the Value, and so gets exactly what an Explain call gets."""
from __future__ import annotations

import math

from ..serving.requests import DecodedInstance

_EXACT_INT = 2**53      # beyond it a float may round an int differently than a Value does


class _NeedsValue(Exception):
    pass


def decoded(instance, input_names: frozenset[str]) -> DecodedInstance | None:
    """`instance` as to_python(to_value(instance)) reads to the data plane, or None
    when only the Value is sure to give the same answer."""
    if isinstance(instance, dict) and not (instance.keys() <= input_names):
        return None
    try:
        if isinstance(instance, dict):
            return DecodedInstance({key: _plain(value) for key, value in instance.items()})
        return DecodedInstance(_plain(instance))
    except _NeedsValue:
        return None


def _plain(x, in_list: bool = False):
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, bool):
        if in_list:
            raise _NeedsValue
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            raise _NeedsValue
        return float(x)
    if isinstance(x, int):
        if abs(x) > _EXACT_INT:
            raise _NeedsValue
        return float(x)
    if isinstance(x, list):
        return [_plain(item, True) for item in x]
    raise _NeedsValue          # a nested dict (its order), a tuple, a numpy value...
