"""Shapley values: model-agnostic, from predictions only (no gradients).

Players are sets of scalar elements of the perturbed tensors (one element
alone, or a group of inputs, or a whole combined-embedding input), switched
between the baseline's values and the instance's together.

Sampled (Vertex's method): each path is a random order of the players; walking
from the baseline to the instance one player at a time, a player's value on
that path is the change in output when it switches. The mean over paths is an
unbiased estimate of its Shapley value, and the spread over paths gives each
estimate's standard error. Every path adds up exactly to the output change.

Exact: every coalition of the F players is evaluated (2^F model rows) and the
Shapley formula applied. `prefers_exact` chooses it whenever that costs no more
rows than the sampled paths would (path_count x F).

Rows of every path, coalition, baseline, output and instance of a batch share
model calls of up to `max_rows` rows; only one call's rows are held at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from .model_fn import Inputs, PredictFn

DEFAULT_MAX_ROWS = 1024


@dataclass(frozen=True)
class ShapleyJob:
    """One instance: `instance` holds every model input and perturbed tensor (no batch axis);
    `baselines` hold the perturbed tensors, flattened in their order; `players` gives each
    flattened element's player (0..F-1); `outputs` the output indices explained."""
    instance: Inputs
    baselines: Sequence[Mapping[str, np.ndarray]]
    players: np.ndarray
    outputs: Sequence[int]
    path_count: int
    exact: bool = False
    seed: int = 0

    @property
    def player_count(self) -> int:
        return int(self.players.max()) + 1 if len(self.players) else 0


@dataclass(frozen=True)
class ShapleyValues:
    """Per output index: (baselines, paths, players) values of each path, or the exact values
    (paths = 1) when `exact`."""
    per_path: dict[int, np.ndarray]
    exact: bool


def prefers_exact(player_count: int, path_count: int) -> bool:
    """All 2^F coalitions cost no more model rows than path_count x F sampled ones."""
    return 0 < player_count and 2 ** player_count <= path_count * player_count


def estimate(per_path: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(baselines, paths, ...) -> (the mean over both, the standard error of that mean or None).

    Paths are drawn per baseline; the estimate averages baselines, so its variance is
    the mean of the per-baseline variances of the mean, over the baseline count. One
    path has no spread to measure, and exact values none to report."""
    values = per_path.mean(axis=(0, 1))
    baselines, paths = per_path.shape[:2]
    if exact or paths < 2:
        return values, None
    variances = per_path.var(axis=1, ddof=1) / paths          # (baselines, ...)
    return values, np.sqrt(variances.sum(axis=0)) / baselines


def shapley_values(predict_fn: PredictFn, jobs: Sequence[ShapleyJob],
                   max_rows: int = DEFAULT_MAX_ROWS) -> list[ShapleyValues]:
    """Every job's values, paths (or coalitions) evaluated in shared model calls."""
    results = [{index: np.zeros((len(job.baselines), 1 if job.exact else job.path_count, job.player_count))
                for index in job.outputs} for job in jobs]
    pending: list[tuple[_Unit, int, int]] = []
    rows = 0
    for unit in _units(jobs):
        for start in range(0, unit.size, max_rows):
            stop = min(unit.size, start + max_rows)
            if pending and rows + stop - start > max_rows:
                _evaluate(predict_fn, jobs, pending, results)
                pending, rows = [], 0
            pending.append((unit, start, stop))
            rows += stop - start
    if pending:
        _evaluate(predict_fn, jobs, pending, results)
    return [ShapleyValues(per_path, job.exact) for per_path, job in zip(results, jobs)]


@dataclass
class _Unit:
    """One path (F + 1 rows) or one baseline's coalitions (2^F rows) of one job."""
    job: int
    baseline: int
    path: int
    masks: np.ndarray           # (rows, F) which players hold the instance's values
    order: np.ndarray | None    # a path's player order; None for all coalitions
    outputs: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.masks)


def _units(jobs: Sequence[ShapleyJob]) -> Iterator[_Unit]:
    for j, job in enumerate(jobs):
        count = job.player_count
        rng = np.random.default_rng(job.seed)
        for b in range(len(job.baselines)):
            if job.exact:
                coalitions = (np.arange(2 ** count)[:, None] >> np.arange(count)[None, :]) & 1
                yield _Unit(j, b, 0, coalitions.astype(bool), None)
                continue
            for p in range(job.path_count):
                order = rng.permutation(count)
                rank = np.empty(count, np.int64)
                rank[order] = np.arange(count)
                # Row k: the first k players of the order hold the instance's values.
                yield _Unit(j, b, p, rank[None, :] < np.arange(count + 1)[:, None], order)


def _evaluate(predict_fn, jobs, pending, results) -> None:
    parts = [_rows(jobs[unit.job], unit, start, stop) for unit, start, stop in pending]
    batch = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    outputs = np.asarray(predict_fn(batch), np.float64)
    offset = 0
    for unit, start, stop in pending:
        if unit.outputs is None:
            unit.outputs = np.empty((unit.size, outputs.shape[1]))
        unit.outputs[start:stop] = outputs[offset:offset + stop - start]
        offset += stop - start
        if stop == unit.size:
            _finish(jobs[unit.job], unit, results[unit.job])


def _rows(job: ShapleyJob, unit: _Unit, start: int, stop: int) -> dict[str, np.ndarray]:
    names = list(job.baselines[0])
    x = np.concatenate([np.asarray(job.instance[n], np.float64).reshape(-1) for n in names])
    b = np.concatenate([np.asarray(job.baselines[unit.baseline][n], np.float64).reshape(-1) for n in names])
    switched = unit.masks[start:stop][:, job.players]
    flat = np.where(switched, x[None, :], b[None, :])
    batch, offset = {}, 0
    for name in names:
        value = np.asarray(job.instance[name])
        batch[name] = flat[:, offset:offset + value.size].reshape((stop - start,) + value.shape).astype(value.dtype)
        offset += value.size
    for name, value in job.instance.items():
        if name not in batch:
            batch[name] = np.repeat(np.asarray(value)[None], stop - start, axis=0)
    return batch


def _finish(job: ShapleyJob, unit: _Unit, results: dict) -> None:
    for index in job.outputs:
        values = unit.outputs[:, index]
        if unit.order is None:
            results[index][unit.baseline, 0] = _exact(values, job.player_count)
        else:
            results[index][unit.baseline, unit.path, unit.order] = np.diff(values)
    unit.outputs = None


def _exact(values: np.ndarray, count: int) -> np.ndarray:
    """Shapley values from v(S) of every coalition S (bit i of the row index: player i in S)."""
    masks = np.arange(2 ** count)
    sizes = ((masks[:, None] >> np.arange(count)[None, :]) & 1).sum(axis=1)
    weights = np.array([math.factorial(s) * math.factorial(count - s - 1) / math.factorial(count)
                        for s in range(count)])
    out = np.empty(count)
    for i in range(count):
        without = masks[(masks >> i) & 1 == 0]
        out[i] = np.dot(weights[sizes[without]], values[without | (1 << i)] - values[without])
    return out


def sampled_shapley(
    predict_fn: PredictFn,
    instance: Inputs,
    baselines: Sequence[Mapping[str, np.ndarray]],
    output_index: int,
    path_count: int,
    rng: np.random.Generator | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> dict[str, np.ndarray]:
    """Sampled Shapley estimates of one output, every element of the inputs named in the
    baselines its own player, averaged over the baselines."""
    names = list(baselines[0])
    sizes = [int(np.size(instance[n])) for n in names]
    seed = int(rng.integers(2 ** 31)) if rng is not None else 0
    job = ShapleyJob(instance, baselines, np.arange(sum(sizes)), [output_index], path_count, False, seed)
    values, _ = estimate(shapley_values(predict_fn, [job], max_rows)[0].per_path[output_index], False)
    out, offset = {}, 0
    for name, size in zip(names, sizes):
        out[name] = values[offset:offset + size].reshape(np.shape(instance[name]))
        offset += size
    return out
