"""Sampled Shapley values: model-agnostic, needs predictions only (no gradients).

Each path is a random permutation of the features; walking from the baseline to
the instance one feature at a time, a feature's attribution on that path is the
change in output when it switches. The mean over paths is an unbiased estimate
of the Shapley value; for an additive model every path gives the exact value.
Features are the scalar elements of the explained inputs.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .model_fn import Inputs, PredictFn

DEFAULT_MAX_ROWS = 1024


def sampled_shapley(
    predict_fn: PredictFn,
    instance: Inputs,
    baselines: Sequence[Mapping[str, np.ndarray]],
    output_index: int,
    path_count: int,
    rng: np.random.Generator | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, np.ndarray]:
    """Shapley estimates for the inputs named in the baselines, averaged over baselines."""
    rng = rng if rng is not None else np.random.default_rng(0)
    names = list(baselines[0])
    shapes = {n: np.shape(instance[n]) for n in names}
    x = _flatten(instance, names)
    total = np.zeros_like(x)
    for baseline in baselines:
        b = _flatten(baseline, names)
        for _ in range(path_count):
            total += _one_path(predict_fn, instance, names, shapes, x, b, rng.permutation(len(x)), output_index, max_rows)
    return _unflatten(total / (path_count * len(baselines)), names, shapes)


def _one_path(predict_fn, instance, names, shapes, x, b, order, output_index, max_rows) -> np.ndarray:
    # Row k has the first k features of `order` at the instance's values, the rest at the baseline's.
    feature_count = len(x)
    rank = np.empty(feature_count, dtype=np.int64)
    rank[order] = np.arange(feature_count)
    outputs = []
    for start in range(0, feature_count + 1, max_rows):
        steps = np.arange(start, min(start + max_rows, feature_count + 1))
        switched = rank[None, :] < steps[:, None]
        rows = np.where(switched, x[None, :], b[None, :])
        batch = _unflatten_batch(rows, names, shapes)
        for name, value in instance.items():
            if name not in batch:
                batch[name] = np.repeat(np.asarray(value)[None], len(steps), axis=0)
            else:
                batch[name] = batch[name].astype(np.asarray(value).dtype, copy=False)
        outputs.append(np.asarray(predict_fn(batch), np.float64)[:, output_index])
    values = np.concatenate(outputs)
    contributions = np.zeros(feature_count)
    contributions[order] = np.diff(values)
    return contributions


def _flatten(inputs: Inputs, names: list[str]) -> np.ndarray:
    return np.concatenate([np.asarray(inputs[n], np.float64).ravel() for n in names])


def _unflatten(vector: np.ndarray, names, shapes) -> dict[str, np.ndarray]:
    out, offset = {}, 0
    for n in names:
        size = int(np.prod(shapes[n], dtype=np.int64))
        out[n] = vector[offset:offset + size].reshape(shapes[n])
        offset += size
    return out


def _unflatten_batch(rows: np.ndarray, names, shapes) -> dict[str, np.ndarray]:
    out, offset = {}, 0
    for n in names:
        size = int(np.prod(shapes[n], dtype=np.int64))
        out[n] = rows[:, offset:offset + size].reshape((len(rows),) + tuple(shapes[n]))
        offset += size
    return out
