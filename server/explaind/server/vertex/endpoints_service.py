"""Vertex's EndpointService (v1, v1beta1) over explaind's endpoint control
(control/endpoints.py): create, get, list, update and delete endpoints, deploy
and undeploy models, with endpoints shown as Vertex's resources. The gRPC
handlers (vertex/services.py) and the REST port (vertex/resources_rest.py)
both call VertexEndpoints: it only translates.

GetEndpoint also answers for the endpoints the --vertex-endpoints mapping
names and for a model's default endpoint (its id is the model id): they are
shown as Vertex would show them and cannot be changed through this service.
"""
from __future__ import annotations

import asyncio

from explaind.vertex.v1 import endpoint_service_pb2 as es

from ..control.control_plane import ControlPlane
from ..control.endpoints import EndpointControl
from ..control.resource_filter import Listed, page_of, parse_filter, parse_order, seconds
from ..errors import FailedPrecondition, InvalidArgument, NotFound
from ..store.endpoints import EndpointRecord
from . import names
from .operations import VertexOperation, VertexOperations
from .prediction import reject_unknown_fields
from .routing import Router


class VertexEndpoints:
    def __init__(self, control: EndpointControl, models: ControlPlane, router: Router,
                 operations: VertexOperations):
        self.control = control
        self.models = models
        self.router = router
        self.operations = operations

    async def create(self, request: es.CreateEndpointRequest, version: str) -> VertexOperation:
        reject_unknown_fields(request)
        parent = names.parent(request.parent)
        record = await asyncio.to_thread(self.control.create, request.endpoint_id, request.endpoint,
                                         self._mapped)
        return await self.operations.done("create_endpoint", version, parent.endpoint(record.endpoint_id),
                                          vertex_endpoint(record, parent))

    async def get(self, name: str) -> es.Endpoint:
        parent, endpoint_id = names.resource(name, "endpoints")
        record = await asyncio.to_thread(self.control.endpoints.get, endpoint_id)
        if record is not None:
            return vertex_endpoint(record, parent)
        return await self._implicit(parent, endpoint_id, name)

    async def list(self, request: es.ListEndpointsRequest) -> es.ListEndpointsResponse:
        reject_unknown_fields(request)
        parent = names.parent(request.parent)
        wanted = parse_filter(request.filter)
        order = parse_order(request.order_by)
        records = await asyncio.to_thread(self.control.list)
        listed = [(Listed(r.endpoint.display_name, dict(r.endpoint.labels), seconds(r.endpoint.create_time),
                          seconds(r.endpoint.update_time)), r) for r in records]
        listed = [pair for pair in listed if wanted(pair[0])]
        order(listed)
        page, token = page_of([r for _, r in listed], request.page_size, request.page_token)
        return es.ListEndpointsResponse(endpoints=[vertex_endpoint(r, parent) for r in page], next_page_token=token)

    async def update(self, request: es.UpdateEndpointRequest) -> es.Endpoint:
        reject_unknown_fields(request)
        parent, endpoint_id = names.resource(request.endpoint.name, "endpoints", field="endpoint.name")
        await self._writable(parent, endpoint_id, request.endpoint.name)
        record = await asyncio.to_thread(self.control.update, endpoint_id, request.endpoint.name, request.endpoint,
                                         list(request.update_mask.paths))
        return vertex_endpoint(record, parent)

    async def delete(self, name: str, version: str) -> VertexOperation:
        parent, endpoint_id = names.resource(name, "endpoints")
        await self._writable(parent, endpoint_id, name)
        await asyncio.to_thread(self.control.delete, endpoint_id, name)
        return await self.operations.done("delete", version, parent.name, None)

    async def deploy(self, request: es.DeployModelRequest, version: str) -> VertexOperation:
        reject_unknown_fields(request)
        parent, endpoint_id = names.resource(request.endpoint, "endpoints", field="endpoint")
        await self._writable(parent, endpoint_id, request.endpoint)
        _, model_id = names.resource(request.deployed_model.model, "models", field="deployed_model.model")

        async def work():
            _, deployed = await asyncio.to_thread(self.control.deploy, endpoint_id, request.endpoint,
                                                  request.deployed_model, model_id, dict(request.traffic_split))
            return es.DeployModelResponse(deployed_model=vertex_deployment(deployed, parent))
        return await self.operations.run("deploy", version, parent.endpoint(endpoint_id), work())

    async def undeploy(self, request: es.UndeployModelRequest, version: str) -> VertexOperation:
        reject_unknown_fields(request)
        parent, endpoint_id = names.resource(request.endpoint, "endpoints", field="endpoint")
        await self._writable(parent, endpoint_id, request.endpoint)
        if not request.deployed_model_id:
            raise InvalidArgument("name the deployed model to undeploy", field="deployed_model_id")
        await asyncio.to_thread(self.control.undeploy, endpoint_id, request.endpoint, request.deployed_model_id,
                                dict(request.traffic_split))
        return await self.operations.done("undeploy", version, parent.endpoint(endpoint_id), None)

    # --- the mapping's endpoints and the models' default ones ---
    def _mapped(self, endpoint_id: str) -> bool:
        return any(key == endpoint_id or key.endswith(f"/endpoints/{endpoint_id}")
                   for key in self.router.mapping.endpoints)

    async def _implicit(self, parent: names.Parent, endpoint_id: str, name: str) -> es.Endpoint:
        """The mapping's endpoint, or a model's default endpoint, as a read-only Endpoint."""
        try:
            target = self.router.mapping.resolve(name)
        except NotFound:
            raise NotFound(f"endpoint {name[:300]} not found", field="name") from None
        mapped = self.router.mapping.endpoints.get(name) or self.router.mapping.endpoints.get(endpoint_id)
        deployed = mapped.deployed_models if mapped is not None else {target.deployed_model_id: target.model_id}
        out = es.Endpoint(name=name, display_name=endpoint_id)
        out.traffic_split[target.deployed_model_id] = 100
        for deployed_id, model_id in sorted(deployed.items()):
            out.deployed_models.add(id=deployed_id, model=parent.model(model_id), model_version_id="1",
                                    display_name=model_id)
        if mapped is None:                 # the default: the model must exist
            try:
                model = await self.models.get_model(target.model_id)
            except NotFound:
                raise NotFound(f"endpoint {name[:300]} not found (no endpoint, mapping or model has this id)",
                               field="name") from None
            out.display_name = model.display_name or endpoint_id
            out.create_time.CopyFrom(model.create_time)
            out.update_time.CopyFrom(model.update_time)
            out.deployed_models[0].create_time.CopyFrom(model.create_time)
        return out

    async def _writable(self, parent: names.Parent, endpoint_id: str, name: str) -> None:
        if self.router.has(endpoint_id) or await asyncio.to_thread(self.control.endpoints.get, endpoint_id):
            return
        try:
            await self._implicit(parent, endpoint_id, name)
        except NotFound:
            raise NotFound(f"endpoint {name[:300]} not found", field="name") from None
        kind = "named by the --vertex-endpoints mapping" if self._mapped(endpoint_id) else "a model's default endpoint"
        raise FailedPrecondition(f"endpoint {name[:300]} is {kind} and cannot be changed here; create an endpoint "
                                 "(CreateEndpoint) and deploy to it", field="name")


def vertex_endpoint(record: EndpointRecord, parent: names.Parent) -> es.Endpoint:
    out = es.Endpoint()
    out.CopyFrom(record.endpoint)
    out.name = parent.endpoint(record.endpoint_id)
    for deployed in out.deployed_models:
        deployed.model = parent.model(deployed.model.rpartition("/")[2])
    return out


def vertex_deployment(deployed: es.DeployedModel, parent: names.Parent) -> es.DeployedModel:
    out = es.DeployedModel()
    out.CopyFrom(deployed)
    out.model = parent.model(deployed.model.rpartition("/")[2])
    return out
