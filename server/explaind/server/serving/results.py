"""What the data plane answers, before any API surface turns it into its wire
messages: per instance, its label, neighbors and attributions."""
from __future__ import annotations

import dataclasses

import numpy as np

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
