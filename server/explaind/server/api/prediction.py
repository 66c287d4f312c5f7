"""explaind.v1 PredictionService: Explain and Predict, translated to and from the data plane."""
from __future__ import annotations

import asyncio

import numpy as np

from explaind.v1 import prediction_service_pb2, prediction_service_pb2_grpc

from ..errors import NotFound
from ..serving.data_plane import DataPlane
from ..serving.requests import reject_parameters
from ..serving.results import InstanceExplanation
from . import names
from .status import translate_errors


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane

    @translate_errors
    async def Explain(self, request, context):
        model_id = names.model_id(request.name)
        _check_deployed_model(request.deployed_model_id, model_id)
        reject_parameters(request.parameters if request.HasField("parameters") else None)
        explanations = await self.plane.explain(model_id, request.instances,
                                                request.explanation_spec_override, deadline_of(context))
        response = prediction_service_pb2.ExplainResponse(deployed_model_id=model_id)
        for explanation in explanations:
            write_explanation(explanation, response.explanations.add())
        write_predictions(explanations, response.predictions)
        return response

    @translate_errors
    async def Predict(self, request, context):
        model_id = names.model_id(request.name)
        reject_parameters(request.parameters if request.HasField("parameters") else None)
        predictions = await self.plane.predict(model_id, request.instances, deadline_of(context))
        return prediction_service_pb2.PredictResponse(predictions=predictions, deployed_model_id=model_id)


def _check_deployed_model(deployed_model_id: str, model_id: str) -> None:
    """explaind.v1 names a model, whose one deployed model is itself."""
    if deployed_model_id and deployed_model_id != model_id:
        raise NotFound(f"models/{model_id} has no deployed model {deployed_model_id[:200]!r} (only {model_id!r})",
                       field="deployed_model_id")


def write_explanation(result: InstanceExplanation, out) -> None:
    """Fills an Explanation message (explaind.v1's, or one with the same field names)."""
    out.input = result.input
    for found in result.neighbors:
        neighbor = out.neighbors.add(neighbor_id=found.neighbor_id, neighbor_distance=found.distance)
        if found.embedding is not None:
            neighbor.embedding.extend(np.asarray(found.embedding, dtype=np.float32).tolist())
    if result.embedding is not None:
        out.embedding.extend(result.embedding.tolist())
    out.attributions.extend(result.attributions)


def write_predictions(results: list[InstanceExplanation], out) -> None:
    """ExplainResponse.predictions: every instance's model outputs, as Predict answers them;
    none when the model has no outputs to give (an index-only model, embeddings sent)."""
    if results and all(result.prediction is not None for result in results):
        out.extend(result.prediction for result in results)


def deadline_of(context) -> float | None:
    """The call's deadline as a loop.time() value, for the batchers."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + remaining
