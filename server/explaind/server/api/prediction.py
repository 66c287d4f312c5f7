"""explaind.v1 PredictionService: Explain and Predict, translated to and from the data plane."""
from __future__ import annotations

import asyncio

import numpy as np

from explaind.v1 import prediction_service_pb2, prediction_service_pb2_grpc

from ..serving.data_plane import DataPlane
from ..serving.results import InstanceExplanation
from . import names
from .status import translate_errors


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane

    @translate_errors
    async def Explain(self, request, context):
        explanations = await self.plane.explain(names.model_id(request.name), request.instances,
                                                request.explanation_spec_override, deadline_of(context))
        response = prediction_service_pb2.ExplainResponse()
        for explanation in explanations:
            write_explanation(explanation, response.explanations.add())
        return response

    @translate_errors
    async def Predict(self, request, context):
        predictions = await self.plane.predict(names.model_id(request.name), request.instances,
                                               deadline_of(context))
        return prediction_service_pb2.PredictResponse(predictions=predictions)


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


def deadline_of(context) -> float | None:
    """The call's deadline as a loop.time() value, for the batchers."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + remaining
