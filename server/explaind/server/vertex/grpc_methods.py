"""Vertex's services on the gRPC port: unary handlers over async behaviours,
registered under Vertex's service names as generated servicers register
themselves. One place for it, so every Vertex service (prediction, models,
endpoints, jobs) answers errors and registers its methods the same way."""
from __future__ import annotations

from typing import Any, Callable

import grpc

from ..api.status import translate_errors

# method -> (request message, response message, behaviour(*targets, request, version) -> awaitable)
MethodTable = dict[str, tuple[Any, Any, Callable]]


def version_of(service: str) -> str:
    """"google.cloud.aiplatform.v1beta1.JobService" -> "v1beta1"."""
    return service.split(".")[3]


async def operation_proto(view):
    """A behaviour's awaited operation view as the google.longrunning.Operation it answers."""
    return (await view).to_proto()


def _call(behaviour: Callable, targets: tuple, version: str):
    @translate_errors
    async def handle(_, request, context):
        return await behaviour(*targets, request, version)

    async def call(request, context):         # grpc.aio awaits only coroutine functions
        return await handle(None, request, context)
    return call


def unary_handlers(services: dict[str, MethodTable], *targets) -> dict[str, dict[str, grpc.RpcMethodHandler]]:
    """Service name -> method -> handler, each behaviour called with `targets`, the
    request and the service's version (v1 or v1beta1)."""
    return {service: {name: grpc.unary_unary_rpc_method_handler(
                          _call(behaviour, targets, version_of(service)), request_deserializer=request.FromString,
                          response_serializer=response.SerializeToString)
                      for name, (request, response, behaviour) in methods.items()}
            for service, methods in services.items()}


def register(server: grpc.aio.Server, handlers: dict[str, dict[str, grpc.RpcMethodHandler]]) -> None:
    """A generic handler per service, and the methods registered up front (the faster
    per-call path of grpcio's registered methods)."""
    for service, methods in handlers.items():
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
        server.add_registered_method_handlers(service, methods)
