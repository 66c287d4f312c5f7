"""Integrated gradients: (x - b) * integral over alpha of grad f(b + alpha (x - b)).

Every interpolation point (for every baseline, every noisy sample under
SmoothGrad, every output explained and every instance of a batch) goes into
one batched gradient computation, so a 50-step attribution costs one model
pass over a batch of 50, not 50 passes, and a batch of instances shares it.
The paths are built and integrated as stacked arrays (PathBatch), never job by
job: a batch of a thousand instances costs a few numpy calls, not a thousand.
Each job's arithmetic is elementwise or a sum along its own axes, so a job's
answer is the same alone or in any batch (given the same gradients).

SmoothGrad, as Vertex defines it, adds Gaussian noise to the interpolated
inputs before taking gradients: each of `samples` noisy copies of every path
point gets its own noise, of the sigma given per perturbed tensor (none for a
tensor without one), and the gradients are averaged over the copies. Every job
draws the same noise (one seed, the same shapes), so it is drawn once.
"""
from __future__ import annotations

import itertools
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


@dataclass(frozen=True)
class PathBatch:
    """J jobs stacked, each the mean over P (start, baseline) pairs of the IG of its start
    against its baseline, for its output. `starts` and `baselines` (the explained tensors,
    shaped (J or 1, P or 1, *shape), broadcast against each other) and `context` (every
    other model input, (J, *shape), at the job's own value). Noise as PathJob's."""
    starts: Mapping[str, np.ndarray]
    baselines: Mapping[str, np.ndarray]
    context: Mapping[str, np.ndarray]
    output_index: np.ndarray                     # (J,)
    noise: Mapping[str, float] = field(default_factory=dict)
    samples: int = 1
    seed: int = 0

    @property
    def jobs(self) -> int:
        return len(self.output_index)

    @property
    def pairs(self) -> int:
        return max(np.shape(v)[1] for v in (*self.starts.values(), *self.baselines.values()))

    def sliced(self, start: int, stop: int) -> "PathBatch":
        """Jobs start..stop (arrays with one job stay shared)."""
        def part(values):
            return {name: v if len(v) == 1 else v[start:stop] for name, v in values.items()}
        return PathBatch(part(self.starts), part(self.baselines), {n: v[start:stop] for n, v in self.context.items()},
                         self.output_index[start:stop], self.noise, self.samples, self.seed)


def path_integrals(
    gradient_fn: GradientFn,
    jobs: Sequence[PathJob],
    step_count: int,
    method: str = GAUSS_LEGENDRE,
    max_rows: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Every job's attribution (PathJobs of the same inputs, shapes and noise, as one batch of
    a served model has): integrate() over each run of jobs with as many pairs (stackable)."""
    results: list[dict[str, np.ndarray]] = []
    for _, run in itertools.groupby(jobs, key=lambda job: len(job.pairs)):
        results.extend(_stacked(gradient_fn, list(run), step_count, method, max_rows))
    return results


def _stacked(gradient_fn: GradientFn, jobs: list[PathJob], step_count: int, method: str,
             max_rows: int | None) -> list[dict[str, np.ndarray]]:
    first = jobs[0]
    explained = list(first.pairs[0][0])
    starts = {n: np.stack([[np.asarray(s[n]) for s, _ in job.pairs] for job in jobs]) for n in explained}
    baselines = {n: np.stack([[np.asarray(b[n]) for _, b in job.pairs] for job in jobs]) for n in explained}
    context = {n: np.stack([np.asarray(job.instance[n]) for job in jobs]) for n in first.instance if n not in starts}
    batch = PathBatch(starts, baselines, context, np.array([job.output_index for job in jobs], np.int64),
                      first.noise, first.samples, first.seed)
    integrated = integrate(gradient_fn, batch, step_count, method, max_rows)
    return [{name: value[j] for name, value in integrated.items()} for j in range(len(jobs))]


def integrate(gradient_fn: GradientFn, batch: PathBatch, step_count: int, method: str = GAUSS_LEGENDRE,
              max_rows: int | None = None) -> dict[str, np.ndarray]:
    """Explained tensor -> (J, *shape): every job's attribution, from gradient calls shared by
    as many jobs as fit in `max_rows` rows (a job larger than that is chunked alone). Only
    one chunk's path points are held at once, which bounds memory."""
    alphas, weights = path_points(step_count, method)
    if batch.jobs == 0:
        return {name: np.zeros((0,) + np.shape(v)[2:]) for name, v in batch.starts.items()}
    rows_per_job = len(alphas) * batch.pairs * batch.samples
    per_chunk = max(1, max_rows // rows_per_job) if max_rows else batch.jobs
    noise = _noise(batch, alphas) if batch.noise else {}
    parts = []
    for start in range(0, batch.jobs, per_chunk):
        chunk = batch.sliced(start, min(batch.jobs, start + per_chunk))
        rows = _path_rows(chunk, alphas, noise)
        indices = np.repeat(chunk.output_index, rows_per_job)
        parts.append(_integrate(chunk, _gradients(gradient_fn, rows, indices, max_rows), weights))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if len(parts) > 1 else parts[0]


def _points(batch: PathBatch, name: str, alphas: np.ndarray) -> np.ndarray:
    """(J, P, steps, *shape) float64: b + alpha (x - b) for every job, pair and step."""
    x = np.asarray(batch.starts[name], np.float64)
    b = np.asarray(batch.baselines[name], np.float64)
    tail = (1,) * (x.ndim - 2)
    return b[:, :, None] + alphas.reshape((1, 1, -1) + tail) * (x - b)[:, :, None]


def _path_rows(batch: PathBatch, alphas: np.ndarray, noise: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows ordered job, then pair, then noisy sample, then step."""
    jobs, pairs, samples, steps = batch.jobs, batch.pairs, batch.samples, len(alphas)
    rows = {}
    for name, start in batch.starts.items():
        points = _points(batch, name, alphas)[:, :, None]                  # (J, P, 1, steps, *shape)
        if name in noise:
            points = points + noise[name][None]
        # One array of the model's dtype, filled by broadcasting over jobs, pairs and samples.
        out = np.empty((jobs, pairs, samples, steps) + np.shape(start)[2:], dtype=start.dtype)
        out[...] = points
        rows[name] = out.reshape((-1,) + out.shape[4:])
    for name, value in batch.context.items():
        rows[name] = np.repeat(np.asarray(value), pairs * samples * steps, axis=0)
    return rows


def _noise(batch: PathBatch, alphas: np.ndarray) -> dict[str, np.ndarray]:
    """Name -> (P, samples, steps, *shape): the noise every job adds to its points, drawn as one
    job draws it (one generator of the job's seed: name by name, pair by pair, sample by sample)."""
    rng = np.random.default_rng(batch.seed)
    out = {}
    for name in sorted(batch.starts):         # sorted: the same draws in every process
        sigma = batch.noise.get(name, 0.0)
        if not sigma > 0:
            continue
        shape = (len(alphas),) + np.shape(batch.starts[name])[2:]
        out[name] = np.stack([np.stack([rng.normal(0.0, sigma, shape) for _ in range(batch.samples)])
                              for _ in range(batch.pairs)])
    return out


def _integrate(batch: PathBatch, gradients: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    jobs, pairs, samples = batch.jobs, batch.pairs, batch.samples
    result = {}
    for name in batch.starts:
        shape = np.shape(batch.starts[name])[2:]
        grads = np.asarray(gradients[name], np.float64).reshape((jobs, pairs, samples, len(weights)) + shape)
        # A weighted sum along the steps, per element: the same for a job alone or in any batch.
        weighted = (grads * weights.reshape((1, 1, 1, -1) + (1,) * len(shape))).sum(axis=3)
        averaged = weighted.mean(axis=2)                                           # (J, P, *shape)
        diffs = np.asarray(batch.starts[name], np.float64) - np.asarray(batch.baselines[name], np.float64)
        result[name] = (diffs * averaged).mean(axis=1)
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
