"""Which outputs to explain, in Vertex's order: output_indices as given; else the top_k
highest outputs (-1: all), highest first; else the argmax."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InvalidArgument


def select_outputs(
    scores: np.ndarray,
    top_k: int = 0,
    output_indices: Sequence | None = None,
    output_shape: tuple[int, ...] | None = None,
    field: str = "parameters",
) -> list[int]:
    """Flat output indices to explain: output_indices in their order (a repeat is dropped),
    else top_k ordered by score (instance output value), highest first.

    `scores` is one instance's flattened output. output_indices entries are
    ints, or lists of ints (multi-indices into output_shape for a multi-axis
    output). top_k 0 means unset (1).
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if output_indices:
        shape = output_shape or (len(scores),)
        chosen = []
        for position, entry in enumerate(output_indices):
            chosen.append(_flat_index(entry, shape, f"{field}.output_indices[{position}]"))
        return list(dict.fromkeys(chosen))
    if top_k < -1:
        raise InvalidArgument(f"top_k must be -1 (all outputs) or positive, got {top_k}", field=f"{field}.top_k")
    count = len(scores) if top_k == -1 else min(top_k or 1, len(scores))
    return sorted(range(len(scores)), key=lambda i: -scores[i])[:count]


def _flat_index(entry, shape: tuple[int, ...], field: str) -> int:
    parts = entry if isinstance(entry, (list, tuple)) else [entry]
    if len(parts) != len(shape) or any(not _is_int(p) for p in parts):
        raise InvalidArgument(f"output index {entry!r} must be {len(shape)} integer(s) for output shape {list(shape)}", field=field)
    parts = [int(p) for p in parts]
    if any(p < 0 or p >= s for p, s in zip(parts, shape)):
        raise InvalidArgument(f"output index {entry!r} is out of range for output shape {list(shape)}", field=field)
    return int(np.ravel_multi_index(parts, shape))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer())
