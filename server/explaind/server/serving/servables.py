"""Servables: a published model version loaded for serving, one class per kind
of explanation behind one interface (KServe's model objects, TF Serving's
servables).

`load_servable` is the one factory: it branches once on the explanation
method. The data plane then only calls the interface (input names, explain,
predict, close) and never asks which kind it holds.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import numpy as np

from explaind.v1 import explanation_pb2, model_pb2

from ..errors import FailedPrecondition, InvalidArgument
from ..index.example_index import ExampleIndex
from ..index.row_reads import MAPPED
from ..methods import Method, latent_source, method_of
from ..runtime.tensorflow_check import require_tensorflow
from ..store.models import ModelRecord
from .requests import ExplainCall, examples_query, instance_restricts
from .results import InstanceExplanation, NeighborResult, prediction_value

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)
OVERRIDE = "explanation_spec_override"


class Servable:
    """One loaded version of one model. Subclasses say how it explains."""

    def __init__(self, record: ModelRecord):
        self.record = record

    @property
    def model(self) -> model_pb2.Model:
        return self.record.model

    @property
    def model_id(self) -> str:
        return self.record.model_id

    @property
    def build_id(self) -> str:
        return self.record.build_id

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def index(self) -> ExampleIndex | None:
        """The examples index, for metrics; None for kinds without one."""
        return None

    def input_names(self) -> list[str] | None:
        """The model's input names; None when it has no model (index-only)."""
        raise NotImplementedError

    def check_override(self, override: explanation_pb2.ExplanationSpecOverride) -> None:
        """INVALID_ARGUMENT for override parts that do not apply to this kind."""
        raise NotImplementedError

    async def explain(self, call: ExplainCall, engine: "Engine") -> list[InstanceExplanation]:
        raise NotImplementedError

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def input_specs(self):
        raise NotImplementedError

    def close(self) -> None:
        pass


class ExampleServable(Servable):
    """Example-based explanations: an index of the training examples and, unless
    the model is index-only, the SavedModel whose latent space embeds instances."""

    def __init__(self, record: ModelRecord, index: ExampleIndex, latent=None):
        super().__init__(record)
        self._index = index
        self.latent = latent          # runtime.saved_model.LatentModel, or None (index-only)

    @property
    def index(self) -> ExampleIndex:
        return self._index

    @property
    def device(self) -> str:
        return self._index.info.device

    @property
    def default_neighbor_count(self) -> int:
        return self.model.explanation_spec.parameters.examples.neighbor_count

    def input_names(self) -> list[str] | None:
        return list(self.latent.input_names) if self.latent is not None else None

    def input_specs(self):
        if self.latent is None:
            raise FailedPrecondition(f"{self.model.name} is an index-only model (no artifact_uri): it has no "
                                     "SavedModel to run", field="name")
        return self.latent.input_specs

    def check_override(self, override) -> None:
        for part in ("parameters", "metadata"):
            if override.HasField(part):
                raise InvalidArgument(f"{self.model.name} explains by examples: attribution {part} do not "
                                      "apply (use examples_override)", field=f"{OVERRIDE}.{part}")

    async def explain(self, call: ExplainCall, engine: "Engine") -> list[InstanceExplanation]:
        query = examples_query(call.override, self.default_neighbor_count, call.limits)
        predictions = [None] * len(call.instances)
        if query.embeddings_format:
            vectors = np.stack([_embedding_of(inst, i, self._index.dimensions)
                                for i, inst in enumerate(call.instances)])
        else:
            self._require_latent()
            # The run that embeds also answers the model's own outputs, which go beside the neighbors
            # as Vertex's ExplainResponse.predictions.
            vectors, rows = await engine.embed_and_predict(self, call.instances, call.deadline)
            predictions = [prediction_value(row) for row in rows]
        restricts = instance_restricts(call.instances, query, call.limits)
        found = await engine.search(self, vectors, restricts, query.neighbor_count,
                                    query.crowding_count, call.deadline)
        out = []
        for i, (label, neighbors) in enumerate(zip(call.labels, found)):
            embeddings = None
            if query.return_embeddings and neighbors:
                embeddings = self._index.embeddings_of(np.array([n.position for n in neighbors], dtype=np.int64))
            out.append(InstanceExplanation(
                input=label,
                neighbors=[NeighborResult(n.id, n.distance, embeddings[j] if embeddings is not None else None)
                           for j, n in enumerate(neighbors)],
                embedding=np.asarray(vectors[i], dtype=np.float32) if query.return_embeddings else None,
                prediction=predictions[i]))
        return out

    def embed_and_predict(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The latent embeddings (B, d) and the model's outputs of the same inputs, from one run."""
        return self._require_latent().embed_and_predict(inputs)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.input_specs()          # an index-only model has nothing to predict with
        return self.latent.predict(inputs)

    def _require_latent(self):
        if self.latent is None:
            # As input_specs: the request is well formed, this model cannot embed (FAILED_PRECONDITION).
            raise FailedPrecondition(
                f"{self.model.name} is an index-only model (no artifact_uri): send embeddings "
                f"with {OVERRIDE}.examples_override.data_format = EMBEDDINGS",
                field=f"{OVERRIDE}.examples_override.data_format")
        return self.latent

    def close(self) -> None:
        self.latent = None


@dataclasses.dataclass(frozen=True)
class AttributedRow:
    attributions: list[explanation_pb2.Attribution]
    outputs: dict[str, np.ndarray]        # the serving signature's outputs for this instance


class AttributionServable(Servable):
    """Feature attributions (integrated gradients, sampled Shapley, XRAI) of a SavedModel."""

    def __init__(self, record: ModelRecord, features):
        super().__init__(record)
        self.features = features      # runtime.feature_model.FeatureModel

    def input_names(self) -> list[str] | None:
        return list(self.features.input_names)

    def input_specs(self):
        return self.features.input_specs

    def check_override(self, override) -> None:
        if override.HasField("examples_override"):
            raise InvalidArgument(f"{self.model.name} has no examples: example overrides do not apply",
                                  field=f"{OVERRIDE}.examples_override")

    async def explain(self, call: ExplainCall, engine: "Engine") -> list[InstanceExplanation]:
        per_instance = await engine.attribute(self, call.instances, call.override, call.deadline)
        return [InstanceExplanation(input=label, attributions=list(row.attributions),
                                    prediction=prediction_value(row.outputs))
                for label, row in zip(call.labels, per_instance)]

    def attribute(self, inputs: dict[str, np.ndarray], override) -> list["AttributedRow"]:
        """Per instance: its attributions and the model's outputs (one pass serves both)."""
        explained = self.features.explain(inputs, override)
        return [AttributedRow(attributions, {name: value[i] for name, value in explained.predictions.items()})
                for i, attributions in enumerate(explained.attributions)]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.features.predict(inputs)

    def close(self) -> None:
        self.features.close()


def load_servable(record: ModelRecord, build_dir: str | None, use_gpu: bool | None,
                  segments_dir: str | None = None, rerank_reads: str = MAPPED) -> Servable:
    """The servable of a published record whose build files (if any) are in `build_dir`
    (and a compressed index's vector segments in `segments_dir`, read by its
    re-ranks as `rerank_reads` says: index/row_reads.py)."""
    model = record.model
    method = method_of(model.explanation_spec.parameters)
    if method is Method.EXAMPLES:
        if build_dir is None:
            raise ValueError(f"{model.name} explains by examples but its record names no build")
        index = ExampleIndex.load(build_dir, use_gpu=use_gpu, segments_folder=segments_dir, rerank_reads=rerank_reads)
        latent = None
        if model.artifact_uri:
            require_tensorflow("model.artifact_uri")
            from ..runtime.saved_model import LatentModel   # TensorFlow: only for models that need it
            latent = LatentModel.load(model.artifact_uri, latent_source(model.explanation_spec.metadata),
                                      with_outputs=True)
            latent.warm_up()            # TensorFlow's first-call work here, before the model serves
        return ExampleServable(record, index, latent)
    if method is not None:
        require_tensorflow("model.artifact_uri")
        from ..runtime.feature_model import FeatureModel
        return AttributionServable(record, FeatureModel.load(model.artifact_uri, model.explanation_spec))
    raise ValueError(f"{model.name} has no explanation method")


def _embedding_of(instance, index: int, dimensions: int) -> np.ndarray:
    if instance.embedding is None:
        raise InvalidArgument("data_format is EMBEDDINGS but the instance has no embedding",
                              field=f"instances[{index}]")
    vector = np.asarray(instance.embedding, dtype=np.float32).reshape(-1)
    if vector.shape[0] != dimensions:
        raise InvalidArgument(f"the embedding has {vector.shape[0]} values, the model's index has "
                              f"{dimensions} dimensions", field=f"instances[{index}]")
    return vector
