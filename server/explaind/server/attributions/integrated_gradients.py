"""Integrated gradients: (x - b) * integral over alpha of grad f(b + alpha (x - b)).

Every interpolation point (for every baseline, every noisy sample under
SmoothGrad, every output explained and every instance of a batch) goes into
one batched gradient computation, so a 50-step attribution costs one model
pass over a batch of 50, not 50 passes, and a batch of instances shares it.

SmoothGrad, as Vertex defines it, adds Gaussian noise to the interpolated
inputs before taking gradients: each of `samples` noisy copies of every path
point gets its own noise, of the sigma given per perturbed tensor (none for a
tensor without one), and the gradients are averaged over the copies.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .interpolation import GAUSS_LEGENDRE, path_points
from .model_fn import GradientFn, Inputs


Pairs = Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]]


@dataclass(frozen=True)
class PathJob:
    """One attribution to integrate: the mean over (start, baseline) `pairs` of the
    IG of `start` against `baseline`, for output `output_index`. `instance` holds
    every model input (no batch axis); starts and baselines hold only the explained
    (differentiable) tensors; the other inputs stay at the instance's value.
    `noise` (tensor name -> sigma, in the tensor's own units) and `samples` make it
    SmoothGrad; `seed` makes its noise the same at every call."""
    instance: Inputs
    pairs: Pairs
    output_index: int
    noise: Mapping[str, float] = field(default_factory=dict)
    samples: int = 1
    seed: int = 0

    @property
    def rows(self) -> int:
        return len(self.pairs) * self.samples


def path_integrals(
    gradient_fn: GradientFn,
    jobs: Sequence[PathJob],
    step_count: int,
    method: str = GAUSS_LEGENDRE,
    max_rows: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Every job's attribution, from gradient calls shared by as many jobs as fit
    in `max_rows` rows (instances, outputs, baselines and steps alike); a job
    larger than that is chunked alone. Only one group's path points are held at
    once, which bounds memory. Jobs must have the same inputs and shapes (one
    batch of a served model does)."""
    alphas, weights = path_points(step_count, method)
    results: list[dict[str, np.ndarray]] = []
    group: list[PathJob] = []
    group_rows = 0
    for job in jobs:
        rows = len(alphas) * job.rows
        if group and max_rows and group_rows + rows > max_rows:
            results.extend(_integrate_group(gradient_fn, group, alphas, weights, max_rows))
            group, group_rows = [], 0
        group.append(job)
        group_rows += rows
    if group:
        results.extend(_integrate_group(gradient_fn, group, alphas, weights, max_rows))
    return results


def _integrate_group(gradient_fn, jobs, alphas, weights, max_rows) -> list[dict[str, np.ndarray]]:
    rows = [_path_rows(job, alphas) for job in jobs]
    batch = {name: np.concatenate([r[name] for r in rows], axis=0) for name in rows[0]}
    counts = [len(alphas) * job.rows for job in jobs]
    indices = np.concatenate([np.full(n, job.output_index, dtype=np.int64) for n, job in zip(counts, jobs)])
    gradients = _gradients(gradient_fn, batch, indices, max_rows)
    results, offset = [], 0
    for job, n in zip(jobs, counts):
        part = {name: g[offset:offset + n] for name, g in gradients.items()}
        results.append(_integrate(job, part, weights))
        offset += n
    return results


def _path_rows(job: PathJob, alphas: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ordered pair, then noisy sample, then step."""
    explained = list(job.pairs[0][0])
    rng = np.random.default_rng(job.seed) if job.noise else None
    rows = {}
    for name in job.instance.keys() | set(explained):
        value = job.instance[name] if name in job.instance else job.pairs[0][0][name]
        if name in explained:
            paths = []
            for start, base in job.pairs:
                x, b = np.asarray(start[name], np.float64), np.asarray(base[name], np.float64)
                points = b[None] + alphas.reshape((-1,) + (1,) * b.ndim) * (x - b)[None]
                for _ in range(job.samples):
                    sigma = job.noise.get(name, 0.0)
                    paths.append(points + rng.normal(0.0, sigma, points.shape) if sigma > 0 else points)
            rows[name] = np.concatenate(paths, axis=0).astype(np.asarray(value).dtype, copy=False)
        else:
            rows[name] = np.repeat(np.asarray(value)[None], len(alphas) * job.rows, axis=0)
    return rows


def _integrate(job: PathJob, gradients: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    pairs = job.pairs
    result = {}
    for name in pairs[0][0]:
        shape = np.shape(pairs[0][0][name])
        grads = np.asarray(gradients[name], dtype=np.float64).reshape((len(pairs), job.samples, len(weights)) + shape)
        averaged = np.tensordot(weights, grads, axes=([0], [2])).mean(axis=1)  # (pairs, *shape)
        diffs = np.stack([np.asarray(s[name], np.float64) - np.asarray(b[name], np.float64) for s, b in pairs])
        result[name] = (diffs * averaged).mean(axis=0)
    return result


def path_integral(
    gradient_fn: GradientFn,
    instance: Inputs,
    pairs: Pairs,
    output_index: int,
    step_count: int,
    method: str = GAUSS_LEGENDRE,
    max_rows: int | None = None,
) -> dict[str, np.ndarray]:
    """One job's attribution (see PathJob)."""
    return path_integrals(gradient_fn, [PathJob(instance, pairs, output_index)], step_count, method, max_rows)[0]


def baseline_pairs(instance: Inputs, baselines: Sequence[Mapping[str, np.ndarray]]) -> list:
    """IG's pairs: the instance against each baseline (over the explained inputs)."""
    start = {name: np.asarray(instance[name]) for name in baselines[0]}
    return [(start, b) for b in baselines]


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
    return path_integral(gradient_fn, instance, baseline_pairs(instance, baselines), output_index, step_count,
                         method, max_rows)


def _gradients(gradient_fn: GradientFn, batch: Inputs, indices: np.ndarray, max_rows: int | None) -> dict[str, np.ndarray]:
    rows = len(indices)
    if not max_rows or rows <= max_rows:
        return gradient_fn(batch, indices)
    parts = [
        gradient_fn({k: v[i:i + max_rows] for k, v in batch.items()}, indices[i:i + max_rows])
        for i in range(0, rows, max_rows)
    ]
    return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}
