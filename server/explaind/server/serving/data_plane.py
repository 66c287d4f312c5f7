"""The data plane: Explain and Predict for every API surface (KServe's DataPlane).

A servicer reads its wire request into the parts below (a model id, the
instances as google.protobuf.Value, an explaind.v1 ExplanationSpecOverride),
calls the data plane, and writes the typed results back in its own messages.
Validation, batching, search and attribution happen here and below, once.
"""
from __future__ import annotations

from typing import Sequence

from google.protobuf import struct_pb2

from explaind.v1 import explanation_pb2

from ..errors import attach_fields
from .engine import Engine
from .manager import ModelManager
from .requests import DecodedInstance, ExplainCall, Limits, parse_instances, wants_embeddings
from .results import InstanceExplanation, prediction_value


class DataPlane:
    def __init__(self, manager: ModelManager, engine: Engine, limits: Limits, metrics=None):
        self.manager = manager
        self.engine = engine
        self.limits = limits
        self.metrics = metrics

    async def explain(self, model_id: str, instances: Sequence[struct_pb2.Value | DecodedInstance],
                      override: explanation_pb2.ExplanationSpecOverride,
                      deadline: float | None) -> list[InstanceExplanation]:
        """Per instance: its nearest examples or its attributions, as the model explains."""
        async with self.manager.serving(model_id) as servable:
            servable.check_override(override)
            embeddings = wants_embeddings(override)
            parsed = parse_instances(instances, None if embeddings else servable.input_names(), embeddings,
                                     self.limits)
            with attach_fields("instances"):      # the index names no request field
                explanations = await servable.explain(ExplainCall(parsed, override, self.limits, deadline),
                                                      self.engine)
            if self.metrics is not None:
                self.metrics.instances.labels(model=model_id, method="Explain").inc(len(parsed))
                if servable.index is not None:
                    self.metrics.neighbors_returned.labels(model=model_id).inc(
                        sum(len(e.neighbors) for e in explanations))
            return explanations

    async def predict(self, model_id: str, instances: Sequence[struct_pb2.Value | DecodedInstance],
                      deadline: float | None) -> list[struct_pb2.Value]:
        """The model's own outputs per instance: the bare value of a single output, else a dict."""
        async with self.manager.serving(model_id) as servable:
            parsed = parse_instances(instances, servable.input_names(), False, self.limits)
            rows = await self.engine.predict(servable, parsed, deadline)
            if self.metrics is not None:
                self.metrics.instances.labels(model=model_id, method="Predict").inc(len(parsed))
            return [prediction_value(row) for row in rows]
