"""SmoothGrad over integrated gradients, as Vertex defines it: Gaussian noise is
added to the interpolated inputs before their gradients are taken, and the
gradients are averaged over `noisy_sample_count` noisy copies of each point.

Sigma is in each tensor's own units (Vertex recommends 10-20% of the feature's
standard deviation); with `feature_noise_sigma`, a tensor not named gets no
noise. The noise lives in integrated_gradients.PathJob, so noisy copies share
one batched gradient call with everything else.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .integrated_gradients import PathJob, baseline_pairs, path_integrals
from .interpolation import GAUSS_LEGENDRE
from .model_fn import GradientFn, Inputs


def smooth_integrated_gradients(
    gradient_fn: GradientFn,
    instance: Inputs,
    baselines: Sequence[Mapping[str, np.ndarray]],
    output_index: int,
    sigmas: Mapping[str, float],
    noisy_sample_count: int = 3,
    step_count: int = 50,
    method: str = GAUSS_LEGENDRE,
    seed: int = 0,
    max_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """IG of the instance against every baseline (averaged), each path point's gradient averaged
    over noisy_sample_count noisy copies; one batched gradient call."""
    job = PathJob(instance, baseline_pairs(instance, baselines), output_index, dict(sigmas), noisy_sample_count, seed)
    return path_integrals(gradient_fn, [job], step_count, method, max_rows)[0]
