"""Vertex AI's PredictionService (Explain, Predict; v1 and v1beta1), served by
the data plane. The gRPC handlers below and the REST port (vertex/rest.py)
both call VertexPrediction: it only translates Vertex's messages.

The handlers are registered under Vertex's own service names, so a client
generated from Vertex's protos calls them unchanged, while the messages are
explaind's copies (package explaind.vertex.*) with Vertex's field numbers.
"""
from __future__ import annotations

import asyncio
import contextlib

import grpc
from google.protobuf import unknown_fields
from google.protobuf.message import Message

from explaind.vertex.v1 import prediction_service_pb2 as v1
from explaind.vertex.v1beta1 import prediction_service_pb2 as v1beta1

from ..api.prediction import deadline_of, write_predictions
from ..api.status import translate_errors
from ..control.deployments import merged
from ..errors import ExplaindError, InvalidArgument, NotFound
from ..serving.data_plane import DataPlane
from ..serving.requests import reject_parameters
from ..serving.results import InstanceExplanation
from .endpoints import EndpointMap, Target
from .grpc_methods import register
from .routing import Router

V1_SERVICE = "google.cloud.aiplatform.v1.PredictionService"
V1BETA1_SERVICE = "google.cloud.aiplatform.v1beta1.PredictionService"
SERVICES = (V1_SERVICE, V1BETA1_SERVICE)
MAX_CONCURRENT_OVERRIDES = 8
MAX_OVERRIDE_KEY = 128
OVERRIDE = "explanation_spec_override"


class VertexPrediction:
    def __init__(self, plane: DataPlane, endpoints: Router | EndpointMap):
        """`endpoints`: a Router (store endpoints, the mapping, the default), or just a mapping."""
        self.plane = plane
        self.endpoints = endpoints

    async def _target(self, name: str, deployed_model_id: str) -> Target:
        if isinstance(self.endpoints, Router):
            return await self.endpoints.lookup(name, deployed_model_id)
        return self.endpoints.resolve(name, deployed_model_id)

    async def explain(self, request, deadline: float | None):
        """A v1 or v1beta1 ExplainRequest -> the ExplainResponse of the same version."""
        beta = isinstance(request, v1beta1.ExplainRequest)
        reject_unknown_fields(request)
        reject_parameters(request.parameters if request.HasField("parameters") else None, "parameters")
        target = await self._target(request.endpoint, request.deployed_model_id)
        overrides = {"": request.explanation_spec_override}
        if beta:
            extra = request.concurrent_explanation_spec_override
            if len(extra) > MAX_CONCURRENT_OVERRIDES:
                raise InvalidArgument(f"at most {MAX_CONCURRENT_OVERRIDES} concurrent overrides, got {len(extra)}",
                                      field="concurrent_explanation_spec_override")
            for key, override in extra.items():
                if not key or len(key) > MAX_OVERRIDE_KEY:
                    raise InvalidArgument(f"keys are 1 to {MAX_OVERRIDE_KEY} characters, got {len(key)}",
                                          field="concurrent_explanation_spec_override")
                overrides[key] = override
        for key, override in overrides.items():
            if override.examples_override.return_embeddings:
                where = f"concurrent_explanation_spec_override[{key}]" if key else OVERRIDE
                raise InvalidArgument("Vertex's Explanation message has no place for embeddings; ask "
                                      "explaind.v1's Explain for them", field=f"{where}.examples_override"
                                                                               ".return_embeddings")
        calls = [self.plane.explain(target.model_id, request.instances, merged(target.override, override), deadline)
                 for override in overrides.values()]
        with _named_by_endpoint(request.endpoint):
            # One override (the usual case) is awaited here: a task per call would cost a loop hop.
            results = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        response = (v1beta1.ExplainResponse if beta else v1.ExplainResponse)(
            deployed_model_id=target.deployed_model_id)
        for key, explanations in zip(overrides, results):
            out = response.explanations if not key else response.concurrent_explanations[key].explanations
            for explanation in explanations:
                write_vertex_explanation(explanation, out.add())
        write_predictions(results[0], response.predictions)
        return response

    async def predict(self, request: v1.PredictRequest, deadline: float | None) -> v1.PredictResponse:
        reject_unknown_fields(request)
        reject_parameters(request.parameters if request.HasField("parameters") else None, "parameters")
        target = await self._target(request.endpoint, "")
        with _named_by_endpoint(request.endpoint):
            predictions = await self.plane.predict(target.model_id, request.instances, deadline)
        return v1.PredictResponse(predictions=predictions, deployed_model_id=target.deployed_model_id,
                                  model=target.model_name, model_display_name=target.model_display_name,
                                  model_version_id="1")     # explaind keeps one version per model


def write_vertex_explanation(result: InstanceExplanation, out: v1.Explanation) -> None:
    for found in result.neighbors:
        out.neighbors.add(neighbor_id=found.neighbor_id, neighbor_distance=found.distance)
    for attribution in result.attributions:
        # Fields 1 to 7 are Vertex's (tests/unit/test_vertex_protos.py); warnings, images, standard
        # errors and the rest are explaind's.
        vertex = out.attributions.add()
        vertex.MergeFromString(attribution.SerializeToString())
        vertex.DiscardUnknownFields()


def reject_unknown_fields(message: Message, path: str = "") -> None:
    """INVALID_ARGUMENT naming the first field a sender set that explaind's copy of
    the message does not declare (a newer Vertex field): never silently dropped."""
    unknown = unknown_fields.UnknownFieldSet(message)
    if len(unknown):
        number = unknown[0].field_number
        raise InvalidArgument(f"field number {number} of {message.DESCRIPTOR.name} is not one explaind serves",
                              field=f"{path}#{number}" if path else f"#{number}")
    for field, value in message.ListFields():
        if field.message_type is None or field.message_type.full_name.startswith("google.protobuf."):
            continue
        where = f"{path}.{field.name}" if path else field.name
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for key, item in value.items():
                    reject_unknown_fields(item, f"{where}[{key}]")
        elif field.is_repeated:
            for i, item in enumerate(value):
                reject_unknown_fields(item, f"{where}[{i}]")
        else:
            reject_unknown_fields(value, where)


@contextlib.contextmanager
def _named_by_endpoint(endpoint: str):
    """The data plane names the model by the explaind.v1 field `name`; here it is `endpoint`."""
    try:
        yield
    except ExplaindError as e:
        if e.field == "name":
            e.field = "endpoint"
            e.message = f"{endpoint}: {e.message}"
            if isinstance(e, NotFound):
                e.message += " (by default an endpoint's id is its model's id; the vertex_endpoints setting maps others)"
        raise


class _Handlers:
    def __init__(self, vertex: VertexPrediction):
        self.vertex = vertex

    @translate_errors
    async def explain(self, request, context):
        return await self.vertex.explain(request, deadline_of(context))

    @translate_errors
    async def predict(self, request, context):
        return await self.vertex.predict(request, deadline_of(context))


# Vertex's service name -> method -> (request, response) messages, explaind's copies:
# the hand-registered services (their descriptors are not Vertex's, so that a process
# with google-cloud-aiplatform has no duplicate symbols). All unary.
METHODS = {
    V1_SERVICE: {"Explain": (v1.ExplainRequest, v1.ExplainResponse), "Predict": (v1.PredictRequest, v1.PredictResponse)},
    V1BETA1_SERVICE: {"Explain": (v1beta1.ExplainRequest, v1beta1.ExplainResponse),
                      "Predict": (v1.PredictRequest, v1.PredictResponse)},      # the same in v1beta1
}


def method_handlers(vertex: VertexPrediction) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
    """Vertex's service name -> its methods' handlers on explaind's messages, so the paths
    (/google.cloud.aiplatform.v1.PredictionService/Explain...) are Vertex's."""
    handlers = _Handlers(vertex)
    behaviours = {"Explain": handlers.explain, "Predict": handlers.predict}
    return {service: {name: grpc.unary_unary_rpc_method_handler(
                          behaviours[name], request_deserializer=request.FromString,
                          response_serializer=response.SerializeToString)
                      for name, (request, response) in methods.items()}
            for service, methods in METHODS.items()}


def add_to_server(vertex: VertexPrediction, server: grpc.aio.Server) -> None:
    register(server, method_handlers(vertex))
