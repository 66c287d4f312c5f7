"""A SavedModel signature seen as the plain callables attribution maths needs.

TensorFlow is imported lazily so the rest of the package (and its tests)
runs without it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple  # per instance (no batch axis); None for unknown sizes
    dtype: np.dtype
    is_floating: bool


class SignatureModel:
    """One signature of a loaded SavedModel, explaining one of its outputs (flattened per instance)."""

    def __init__(self, signature, output_name: str):
        import tensorflow as tf

        self._tf = tf
        self._signature = signature
        self.output_name = output_name
        _, specs = signature.structured_input_signature
        self.inputs = {
            name: TensorInfo(tuple(spec.shape.as_list()[1:]), np.dtype(spec.dtype.as_numpy_dtype), spec.dtype.is_floating)
            for name, spec in specs.items()
        }
        self.outputs = {
            name: tuple(spec.shape.as_list()[1:]) for name, spec in signature.structured_outputs.items()
        }

    @classmethod
    def load(cls, artifact_uri: str, signature_name: str = "serving_default", output_name: str | None = None):
        import tensorflow as tf

        loaded = tf.saved_model.load(artifact_uri)
        signature = loaded.signatures[signature_name]
        model = cls(signature, output_name or "")
        model._loaded = loaded  # keeps variables alive as long as the signature
        return model

    def _tensors(self, inputs):
        tf = self._tf
        return {name: tf.convert_to_tensor(np.asarray(inputs[name]), dtype=self._signature.structured_input_signature[1][name].dtype)
                for name in self.inputs}

    def _selected(self, outputs):
        tensor = outputs[self.output_name]
        return self._tf.reshape(tensor, (self._tf.shape(tensor)[0], -1))

    def predict(self, inputs) -> np.ndarray:
        """(batch, n_outputs) float64 values of the explained output."""
        return self._selected(self._signature(**self._tensors(inputs))).numpy().astype(np.float64)

    def predict_all(self, inputs) -> dict[str, np.ndarray]:
        return {name: value.numpy() for name, value in self._signature(**self._tensors(inputs)).items()}

    def gradients(self, inputs, output_index: np.ndarray) -> dict[str, np.ndarray]:
        """d output[row, output_index[row]] / d input for each floating input; zeros where not differentiable."""
        tf = self._tf
        tensors = self._tensors(inputs)
        floating = {name: tensor for name, tensor in tensors.items() if self.inputs[name].is_floating}
        with tf.GradientTape() as tape:
            tape.watch(list(floating.values()))
            flat = self._selected(self._signature(**tensors))
            # Rows are independent, so the gradient of the sum is every row's own gradient.
            chosen = tf.gather(flat, tf.convert_to_tensor(output_index, tf.int64), axis=1, batch_dims=1)
        grads = tape.gradient(chosen, floating, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return {name: grads[name].numpy() for name in floating}
