"""Completeness check: attributions should add up to the output change they explain."""
from __future__ import annotations

from typing import Mapping

import numpy as np

WARNING_THRESHOLD = 0.05


def approximation_error(attributions: Mapping[str, np.ndarray], instance_output: float, baseline_output: float) -> float:
    """|sum(attributions) - (instance - baseline)| / |instance - baseline| (0 when both gaps are ~0)."""
    total = float(sum(np.sum(np.asarray(a, np.float64)) for a in attributions.values()))
    gap = float(instance_output) - float(baseline_output)
    residual = abs(total - gap)
    if abs(gap) < 1e-12:
        return 0.0 if residual < 1e-9 else float("inf")
    return residual / abs(gap)


def approximation_warning(error: float, method: str) -> str | None:
    """A user-facing hint when the error is above 0.05, naming the knob to turn."""
    if not error > WARNING_THRESHOLD:
        return None
    knob = "path_count" if method == "sampled_shapley" else "step_count"
    return (
        f"approximation_error {error:.3f} is above {WARNING_THRESHOLD}: the attributions do not add up to the "
        f"output change; increase {knob} or choose baselines whose output differs more from the instance's"
    )
