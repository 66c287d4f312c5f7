"""Integrated gradients: (x - b) * integral over alpha of grad f(b + alpha (x - b)).

Every interpolation point of one instance (for every baseline, and for every
noisy copy under SmoothGrad) goes into one batched gradient call, so a 50-step
attribution costs one model pass over a batch of 50, not 50 passes.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .interpolation import GAUSS_LEGENDRE, path_points
from .model_fn import GradientFn, Inputs


def path_integral(
    gradient_fn: GradientFn,
    instance: Inputs,
    pairs: Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
    output_index: int,
    step_count: int,
    method: str = GAUSS_LEGENDRE,
    max_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Mean over (start, baseline) pairs of the IG attribution of `start` against `baseline`.

    `instance` holds every model input (no batch axis); `start` and `baseline`
    hold only the explained (differentiable) inputs; the other inputs stay at
    the instance's value along every path.
    """
    alphas, weights = path_points(step_count, method)
    explained = list(pairs[0][0])
    rows_per_pair = len(alphas)
    batch: dict[str, np.ndarray] = {}
    for name, value in instance.items():
        if name in explained:
            paths = [
                np.asarray(b)[None] + alphas.reshape((-1,) + (1,) * np.ndim(b)) * (np.asarray(x) - np.asarray(b))[None]
                for x, b in ((start[name], base[name]) for start, base in pairs)
            ]
            batch[name] = np.concatenate(paths, axis=0).astype(np.asarray(value).dtype, copy=False)
        else:
            batch[name] = np.repeat(np.asarray(value)[None], rows_per_pair * len(pairs), axis=0)
    gradients = _gradients(gradient_fn, batch, output_index, max_rows)

    result = {}
    for name in explained:
        grads = np.asarray(gradients[name], dtype=np.float64).reshape((len(pairs), rows_per_pair) + np.shape(pairs[0][0][name]))
        averaged = np.tensordot(weights, grads, axes=([0], [1]))  # (pairs, *shape)
        diffs = np.stack([np.asarray(s[name], np.float64) - np.asarray(b[name], np.float64) for s, b in pairs])
        result[name] = (diffs * averaged).mean(axis=0)
    return result


def integrated_gradients(
    gradient_fn: GradientFn,
    instance: Inputs,
    baselines: Sequence[Mapping[str, np.ndarray]],
    output_index: int,
    step_count: int = 50,
    method: str = GAUSS_LEGENDRE,
    max_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """IG of one instance, averaged over the given baselines (each a dict over the explained inputs)."""
    explained = list(baselines[0])
    start = {name: np.asarray(instance[name]) for name in explained}
    return path_integral(gradient_fn, instance, [(start, b) for b in baselines], output_index, step_count, method, max_rows)


def _gradients(gradient_fn: GradientFn, batch: Inputs, output_index: int, max_rows: int | None) -> dict[str, np.ndarray]:
    rows = len(next(iter(batch.values())))
    if not max_rows or rows <= max_rows:
        return gradient_fn(batch, np.full(rows, output_index, dtype=np.int64))
    parts = [
        gradient_fn({k: v[i:i + max_rows] for k, v in batch.items()}, np.full(min(max_rows, rows - i), output_index, np.int64))
        for i in range(0, rows, max_rows)
    ]
    return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}
