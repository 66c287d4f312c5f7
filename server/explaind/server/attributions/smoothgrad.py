"""SmoothGrad over integrated gradients: the IG attribution averaged over noisy copies of the input.

Sigma is in the feature's own units; where the metadata gives a value domain
(min, max) it is a fraction of that range, matching Vertex's "fraction of the
feature's range" for inputs scaled to [0, 1].
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .integrated_gradients import path_integral
from .interpolation import GAUSS_LEGENDRE
from .model_fn import GradientFn, Inputs


def noisy_copies(
    instance: Mapping[str, np.ndarray], sigmas: Mapping[str, float], count: int, rng: np.random.Generator
) -> list[dict[str, np.ndarray]]:
    """`count` copies of the explained inputs with Gaussian noise of the given per-input sigma."""
    copies = []
    for _ in range(count):
        copies.append({
            name: np.asarray(value, np.float64) + rng.normal(0.0, sigmas.get(name, 0.0), np.shape(value))
            for name, value in instance.items()
        })
    return copies


def smooth_integrated_gradients(
    gradient_fn: GradientFn,
    instance: Inputs,
    baselines: Sequence[Mapping[str, np.ndarray]],
    output_index: int,
    sigmas: Mapping[str, float],
    noisy_sample_count: int = 3,
    step_count: int = 50,
    method: str = GAUSS_LEGENDRE,
    rng: np.random.Generator | None = None,
    max_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Mean IG over noisy_sample_count noisy inputs x every baseline, in one batched gradient call."""
    pairs = noisy_pairs(instance, baselines, sigmas, noisy_sample_count, rng)
    return path_integral(gradient_fn, instance, pairs, output_index, step_count, method, max_rows)


def noisy_pairs(instance: Inputs, baselines: Sequence[Mapping[str, np.ndarray]], sigmas: Mapping[str, float],
                noisy_sample_count: int, rng: np.random.Generator | None = None) -> list:
    """SmoothGrad's pairs: every noisy copy of the instance against every baseline."""
    rng = rng if rng is not None else np.random.default_rng(0)
    explained = {name: np.asarray(instance[name]) for name in baselines[0]}
    starts = noisy_copies(explained, sigmas, noisy_sample_count, rng)
    return [(start, base) for start in starts for base in baselines]
