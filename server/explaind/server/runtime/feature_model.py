"""A feature-attribution model as the server runs it: the attributions
package's FeatureExplainer plus what serving needs around it (a local copy
of a remote SavedModel, the signature's input specs, plain predictions)."""
from __future__ import annotations

import contextlib

import numpy as np

from explaind.v1 import explanation_pb2

from ..errors import InvalidArgument
from .artifacts import LocalArtifact, fetch
from .instances import InputSpec


class FeatureModel:
    def __init__(self, explainer, artifact: LocalArtifact | None = None):
        self.explainer = explainer
        self._artifact = artifact
        self.input_specs = {
            name: InputSpec(name, (None, *info.shape), "string" if info.dtype == np.dtype(object) else info.dtype.name)
            for name, info in explainer.model.inputs.items()
        }
        self.input_names = list(self.input_specs)

    @classmethod
    def load(cls, artifact_uri: str, spec: explanation_pb2.ExplanationSpec) -> "FeatureModel":
        from ..attributions.explainer import FeatureExplainer

        artifact = fetch(artifact_uri)
        try:
            return cls(FeatureExplainer.load(artifact.path, spec), artifact)
        except Exception:
            artifact.cleanup()
            raise

    def explain(self, inputs: dict[str, np.ndarray], override=None):
        """attributions.explainer.ExplainedBatch: attributions per instance, and the predictions."""
        with _model_refusals():
            return self.explainer.explain_batch(inputs, override)

    def explain_arrays(self, inputs: dict[str, np.ndarray], override=None):
        """attributions.explainer.AttributionArrays, or None where the explainer answers by messages only."""
        with _model_refusals():
            return self.explainer.explain_arrays(inputs, override)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with _model_refusals():
            return self.explainer.model.predict_all(inputs)

    def close(self) -> None:
        if self._artifact is not None:
            self._artifact.cleanup()
            self._artifact = None


@contextlib.contextmanager
def _model_refusals():
    """The model's own refusal of a value (a token id past its vocabulary, a picture it cannot
    decode) is the request's fault: INVALID_ARGUMENT with TensorFlow's reason, not INTERNAL."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        raise InvalidArgument(f"the model refused the instances: {_reason(error.message)[:300]}",
                              field="instances") from None


def _reason(message: str) -> str:
    """TensorFlow's reason among its graph execution report (the traceback lines are indented)."""
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.startswith((" ", "\t"))
             and not line.startswith(("Graph execution error", "Detected at node", "[["))]
    return lines[-1] if lines else message.strip()
