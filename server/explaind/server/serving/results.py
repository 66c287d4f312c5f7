"""What the data plane answers, before any API surface turns it into its wire
messages: per instance, its label, neighbors, attributions and prediction."""
from __future__ import annotations

import dataclasses

import numpy as np
from google.protobuf import struct_pb2

from explaind.client.values import to_value
from explaind.v1 import explanation_pb2


@dataclasses.dataclass(frozen=True)
class NeighborResult:
    neighbor_id: str
    distance: float
    embedding: np.ndarray | None = None      # the neighbor's original embedding, when asked for


@dataclasses.dataclass
class InstanceExplanation:
    input: str                                # the instance's id, else its position in the request
    neighbors: list[NeighborResult] = dataclasses.field(default_factory=list)
    attributions: list[explanation_pb2.Attribution] = dataclasses.field(default_factory=list)
    embedding: np.ndarray | None = None       # the instance's own embedding, when asked for
    prediction: struct_pb2.Value | None = None   # the model's outputs, as Predict answers; None without a model


def prediction_value(row: dict[str, np.ndarray]) -> struct_pb2.Value:
    """One instance's outputs as Predict answers them: the bare value of a single output, else a dict."""
    values = {name: _jsonable(np.asarray(value)) for name, value in row.items()}
    if len(values) == 1:
        values = next(iter(values.values()))
    return to_value(values)


def _jsonable(value):
    """Numeric arrays stay arrays (to_value writes them in one pass); bytes become text."""
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in "biuf" else _jsonable(value.tolist())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
