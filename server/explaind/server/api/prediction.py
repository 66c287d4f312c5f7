"""PredictionService: Explain and Predict."""
from __future__ import annotations

import asyncio
import contextlib

import numpy as np
from google.protobuf import struct_pb2

from explaind.client.values import to_value
from explaind.v1 import explanation_pb2, model_pb2, prediction_service_pb2, prediction_service_pb2_grpc

from ..errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ..index.config import DEFAULT_NEIGHBOR_COUNT
from . import names
from .explain_request import examples_query, instance_restricts, parse_instances
from .status import translate_errors


class ModelAccess:
    """Finds the served model for a request, loading it on a cache miss."""

    def __init__(self, registry, watcher, models):
        self.registry = registry
        self.watcher = watcher
        self.models = models

    async def ensure_loaded(self, model_id: str) -> None:
        if self.registry.peek(model_id) is not None:
            return
        record = await asyncio.to_thread(self.models.get, model_id)
        if record is None:
            raise NotFound(f"model models/{model_id} not found", field="name")
        if record.model.state == model_pb2.Model.BUILDING:
            raise FailedPrecondition(f"model models/{model_id} is still building "
                                     f"(operation {record.operation})", field="name")
        # A model that fails to load is not loaded again by every call: the watcher's
        # backoff decides when this replica tries again; another replica may serve it.
        failure = self.watcher.recent_failure(model_id, record.build_id)
        if failure is None:
            try:
                await asyncio.to_thread(self.watcher.load, model_id)
                return
            except Exception:  # noqa: BLE001 - recorded by the watcher, answered below
                failure = self.watcher.recent_failure(model_id, record.build_id)
        why, retry_in = failure or ("unknown error", 0.0)
        raise Unavailable(f"model models/{model_id} failed to load on this replica ({why}); "
                          f"it tries again in {retry_in:.0f}s, another replica may serve it")

    @contextlib.asynccontextmanager
    async def serving(self, name: str):
        """The served model named by a request, held for the whole call."""
        model_id = names.model_id(name)
        await self.ensure_loaded(model_id)
        with self.registry.handle(model_id) as served:
            if served is None:
                raise NotFound(f"model models/{model_id} not found", field="name")
            yield served


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, access: ModelAccess, engine, settings, metrics=None):
        self.access = access
        self.engine = engine
        self.settings = settings
        self.metrics = metrics

    @translate_errors
    async def Explain(self, request, context):
        async with self.access.serving(request.name) as served:
            return await self._explain(served, request, _deadline(context))

    async def _explain(self, served, request, deadline):
        override = request.explanation_spec_override
        response = prediction_service_pb2.ExplainResponse()
        has_examples_override = override.HasField("examples_override")
        if served.index is None and has_examples_override:
            served.require_index()
        if served.features is None:
            for part in ("parameters", "metadata"):
                if override.HasField(part):
                    raise InvalidArgument(f"{served.model.name} explains by examples: attribution {part} do not "
                                          "apply (use examples_override)", field=f"explanation_spec_override.{part}")
        embeddings = has_examples_override and override.examples_override.data_format == \
            explanation_pb2.ExamplesOverride.DataFormat.EMBEDDINGS
        instances = parse_instances(request.instances, None if embeddings else served.input_names(),
                                    embeddings, self.settings)
        explanations = [response.explanations.add(input=_input_label(inst, i)) for i, inst in enumerate(instances)]
        if served.index is not None:
            await self._neighbors(served, instances, override, explanations, deadline)
        if served.features is not None:
            per_instance = await self.engine.attribute(served, instances, override, deadline)
            for explanation, attributions in zip(explanations, per_instance):
                explanation.attributions.extend(attributions)
        if self.metrics is not None:
            self.metrics.instances.labels(model=served.model_id, method="Explain").inc(len(instances))
        return response

    async def _neighbors(self, served, instances, override, explanations, deadline):
        index = served.require_index()
        model_neighbor_count = served.model.explanation_spec.parameters.examples.neighbor_count
        query = examples_query(override.examples_override, model_neighbor_count or DEFAULT_NEIGHBOR_COUNT,
                               self.settings, override.HasField("examples_override"))
        if query.embeddings_format:
            vectors = np.stack([_embedding_of(inst, i, index.dimensions) for i, inst in enumerate(instances)])
        else:
            served.require_latent()
            vectors = await self.engine.embed(served, instances, deadline)
        restricts = [query.restricts + instance_restricts(inst, i, self.settings)
                     for i, inst in enumerate(instances)]
        results = await self.engine.search(served, vectors, restricts, query.neighbor_count,
                                           query.crowding_count, deadline)
        returned = 0
        for i, (explanation, found) in enumerate(zip(explanations, results)):
            positions = np.array([pos for _, _, pos in found], dtype=np.int64)
            neighbor_embeddings = index.embeddings_of(positions) if query.return_embeddings and len(found) else None
            for j, (neighbor_id, distance, _) in enumerate(found):
                neighbor = explanation.neighbors.add(neighbor_id=neighbor_id, neighbor_distance=float(distance))
                if neighbor_embeddings is not None:
                    neighbor.embedding.extend(neighbor_embeddings[j].tolist())
            if query.return_embeddings:
                explanation.embedding.extend(np.asarray(vectors[i], dtype=np.float32).tolist())
            returned += len(found)
        if self.metrics is not None:
            self.metrics.neighbors_returned.labels(model=served.model_id).inc(returned)

    @translate_errors
    async def Predict(self, request, context):
        async with self.access.serving(request.name) as served:
            instances = parse_instances(request.instances, served.input_names(), False, self.settings)
            rows = await self.engine.predict(served, instances, _deadline(context))
            if self.metrics is not None:
                self.metrics.instances.labels(model=served.model_id, method="Predict").inc(len(instances))
            return prediction_service_pb2.PredictResponse(predictions=[_prediction(row) for row in rows])


def _input_label(instance, index: int) -> str:
    return str(instance.id) if instance.id not in (None, "") else str(index)


def _embedding_of(instance, index: int, dimensions: int) -> np.ndarray:
    if instance.embedding is None:
        raise InvalidArgument("data_format is EMBEDDINGS but the instance has no embedding",
                              field=f"instances[{index}]")
    vector = np.asarray(instance.embedding, dtype=np.float32).reshape(-1)
    if vector.shape[0] != dimensions:
        raise InvalidArgument(f"the embedding has {vector.shape[0]} values, the model's index has "
                              f"{dimensions} dimensions", field=f"instances[{index}]")
    return vector


def _prediction(row: dict[str, np.ndarray]) -> struct_pb2.Value:
    """One instance's outputs as JSON: the bare value for a single output, else a dict."""
    values = {name: _jsonable(np.asarray(value)) for name, value in row.items()}
    if len(values) == 1:
        values = next(iter(values.values()))
    return to_value(values)


def _jsonable(value):
    """Numeric arrays stay arrays (to_value writes them in one pass); bytes become text."""
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in "biuf" else _jsonable(value.tolist())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _deadline(context) -> float | None:
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + remaining
