"""A feature-attribution model as the server runs it: the attributions
package's FeatureExplainer plus what serving needs around it (a local copy
of a remote SavedModel, the signature's input specs, plain predictions)."""
from __future__ import annotations

import numpy as np

from explaind.v1 import explanation_pb2

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
        return self.explainer.explain_batch(inputs, override)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.explainer.model.predict_all(inputs)

    def close(self) -> None:
        if self._artifact is not None:
            self._artifact.cleanup()
            self._artifact = None
