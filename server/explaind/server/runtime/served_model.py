"""A published model loaded for serving: its index, its latent model and its
feature explainer, with a small explicit lifecycle (load, then calls, then
close) that the transport layer only calls, never reaches into."""
from __future__ import annotations

import logging
import os
import shutil
import uuid

import numpy as np

from explaind.v1 import model_pb2

from ..errors import FailedPrecondition, InvalidArgument
from ..index.example_index import ExampleIndex
from ..store.models import ModelRecord, ModelStore

log = logging.getLogger(__name__)


class ServedModel:
    def __init__(self, record: ModelRecord, index: ExampleIndex | None, latent, features):
        self.record = record
        self.index = index
        self.latent = latent          # runtime.saved_model.LatentModel or None (index-only model)
        self.features = features      # runtime.feature_model.FeatureModel or None

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
        return self.index.info.get("device", "cpu") if self.index is not None else "cpu"

    @classmethod
    def load(cls, record: ModelRecord, models: ModelStore, cache_dir: str, use_gpu: bool | None) -> "ServedModel":
        """Copies the build's files to the local cache (once) and loads everything."""
        model = record.model
        index = None
        if record.build_id:
            local = os.path.join(cache_dir, record.model_id, record.build_id)
            if not os.path.isdir(local):
                _download(models, record, local)
            index = ExampleIndex.load(local, use_gpu=use_gpu)
        latent = features = None
        if model.artifact_uri:
            method = model.explanation_spec.parameters.WhichOneof("method")
            if method == "examples":
                from .saved_model import LatentModel
                latent = LatentModel.load(model.artifact_uri, model.explanation_spec.metadata.latent_space_source)
            else:
                from .feature_model import FeatureModel
                features = FeatureModel.load(model.artifact_uri, model.explanation_spec)
        log.info("model loaded", extra={"model": model.name, "build": record.build_id})
        return cls(record, index, latent, features)

    # --- the calls ---
    def require_index(self) -> ExampleIndex:
        if self.index is None:
            raise InvalidArgument(f"{self.model.name} has no examples: example overrides do not apply",
                                  field="explanation_spec_override.examples_override")
        return self.index

    def require_latent(self, what: str = "instances in the model's input format"):
        if self.latent is None:
            raise InvalidArgument(
                f"{self.model.name} is an index-only model (no artifact_uri): send embeddings "
                "with explanation_spec_override.examples_override.data_format = EMBEDDINGS",
                field="explanation_spec_override.examples_override.data_format")
        return self.latent

    def input_specs(self):
        if self.latent is not None:
            return self.latent.input_specs
        if self.features is not None:
            return self.features.input_specs
        raise FailedPrecondition(f"{self.model.name} has no model to run", field="name")

    def input_names(self) -> list[str] | None:
        specs = self.latent or self.features
        return list(specs.input_names) if specs is not None else None

    def embed(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.require_latent().embed(inputs)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runner = self.latent or self.features
        if runner is None:
            raise InvalidArgument(f"{self.model.name} has no SavedModel to predict with", field="name")
        return runner.predict(inputs)

    def close(self) -> None:
        if self.features is not None:
            self.features.close()
        self.index = self.latent = self.features = None


def _download(models: ModelStore, record: ModelRecord, local: str) -> None:
    """Copies a build into the cache. Several processes may share the cache (--workers,
    a shared volume): each downloads into its own folder and the first to finish
    publishes it with a rename; the others drop theirs and use it."""
    partial = f"{local}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        models.objects.download_dir(models.build_prefix(record.model_id, record.build_id), partial)
        try:
            os.rename(partial, local)
        except OSError:
            if not os.path.isdir(local):      # not a lost race: a real error
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
