"""The two ways attribution methods see a model: plain callables over numpy arrays.

Attribution maths never imports TensorFlow; `tf_model.SignatureModel` (or a
test double) provides these callables. Their inputs are one dict: the model's
inputs and, where a method perturbs tensors inside the model (an embedding),
those tensors by name, replacing what the model would compute for them.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

Inputs = Mapping[str, np.ndarray]

# inputs (batched, keyed by name) -> outputs of shape (batch, n_outputs)
PredictFn = Callable[[Inputs], np.ndarray]

# (inputs, output index per row) -> d outputs[row, index[row]] / d inputs, for the
# differentiable inputs only, each shaped like its input.
GradientFn = Callable[[Inputs, np.ndarray], dict]


def predict_in_chunks(predict_fn: PredictFn, inputs: Inputs, max_rows: int | None) -> np.ndarray:
    """Runs predict_fn over at most max_rows rows at a time (bounds memory for long paths)."""
    rows = len(next(iter(inputs.values())))
    if not max_rows or rows <= max_rows:
        return np.asarray(predict_fn(inputs))
    parts = [
        np.asarray(predict_fn({k: v[start:start + max_rows] for k, v in inputs.items()}))
        for start in range(0, rows, max_rows)
    ]
    return np.concatenate(parts, axis=0)
