"""Vertex's ModelService and EndpointService on the gRPC port, v1 and v1beta1,
registered under Vertex's service names (as vertex/prediction.py registers
PredictionService) over explaind.vertex.v1's messages, which both versions
share. Long-running methods answer a google.longrunning.Operation whose
metadata and response carry the caller's version's type names; the
Operations service reads Vertex operation names through VertexOperations.
"""
from __future__ import annotations

import grpc
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2

from explaind.vertex.v1 import endpoint_service_pb2 as es
from explaind.vertex.v1 import model_service_pb2 as ms

from .endpoints_service import VertexEndpoints
from .grpc_methods import operation_proto, register, unary_handlers
from .models import VertexModels

VERSIONS = ("v1", "v1beta1")
Operation = operations_pb2.Operation
# method -> (request, response, behaviour(models, endpoints, request, version) -> awaitable)
MODEL_METHODS = {
    "UploadModel": (ms.UploadModelRequest, Operation,
                    lambda m, e, r, v: operation_proto(m.upload(r, v))),
    "GetModel": (ms.GetModelRequest, ms.Model, lambda m, e, r, v: m.get(r.name)),
    "ListModels": (ms.ListModelsRequest, ms.ListModelsResponse, lambda m, e, r, v: m.list(r)),
    "DeleteModel": (ms.DeleteModelRequest, Operation, lambda m, e, r, v: operation_proto(m.delete(r.name, v))),
    "UpdateExplanationDataset": (ms.UpdateExplanationDatasetRequest, Operation,
                                 lambda m, e, r, v: operation_proto(m.update_explanation_dataset(r, v))),
}
ENDPOINT_METHODS = {
    "CreateEndpoint": (es.CreateEndpointRequest, Operation, lambda m, e, r, v: operation_proto(e.create(r, v))),
    "GetEndpoint": (es.GetEndpointRequest, es.Endpoint, lambda m, e, r, v: e.get(r.name)),
    "ListEndpoints": (es.ListEndpointsRequest, es.ListEndpointsResponse, lambda m, e, r, v: e.list(r)),
    "UpdateEndpoint": (es.UpdateEndpointRequest, es.Endpoint, lambda m, e, r, v: e.update(r)),
    "DeleteEndpoint": (es.DeleteEndpointRequest, Operation, lambda m, e, r, v: operation_proto(e.delete(r.name, v))),
    "DeployModel": (es.DeployModelRequest, Operation, lambda m, e, r, v: operation_proto(e.deploy(r, v))),
    "UndeployModel": (es.UndeployModelRequest, Operation, lambda m, e, r, v: operation_proto(e.undeploy(r, v))),
}
SERVICES = {f"google.cloud.aiplatform.{version}.{service}": methods for version in VERSIONS
            for service, methods in (("ModelService", MODEL_METHODS), ("EndpointService", ENDPOINT_METHODS))}


def method_handlers(models: VertexModels, endpoints: VertexEndpoints) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
    return unary_handlers(SERVICES, models, endpoints)


def add_to_server(models: VertexModels, endpoints: VertexEndpoints, server: grpc.aio.Server) -> None:
    register(server, method_handlers(models, endpoints))


class OperationsDelegate:
    """What google.longrunning.Operations asks of Vertex's operation names (api/operations.py)."""

    def __init__(self, operations):
        self.operations = operations

    @staticmethod
    def handles(name: str) -> bool:
        from .operations import is_vertex_name
        return is_vertex_name(name)

    async def get(self, name: str) -> Operation:
        return (await self.operations.get(name)).to_proto()

    async def wait(self, name: str, timeout: float | None) -> Operation:
        return (await self.operations.wait(name, timeout)).to_proto()

    async def cancel(self, name: str) -> empty_pb2.Empty:
        await self.operations.cancel(name)
        return empty_pb2.Empty()

    async def delete(self, name: str) -> empty_pb2.Empty:
        await self.operations.delete(name)
        return empty_pb2.Empty()
