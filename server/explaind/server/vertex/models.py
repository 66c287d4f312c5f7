"""Vertex's ModelService (v1, v1beta1) over explaind's control plane: upload,
get, list, delete, and UpdateExplanationDataset, with models shown as Vertex's
resources. The gRPC handlers (vertex/services.py) and the REST port
(vertex/resources_rest.py) both call VertexModels: it only translates.
"""
from __future__ import annotations

import asyncio

from explaind.client import payloads
from explaind.v1 import model_pb2
from explaind.v1 import model_service_pb2 as explaind_models
from explaind.vertex.v1 import model_service_pb2 as ms

from ..control.control_plane import ControlPlane
from ..control.endpoints import EndpointControl, check_labels, require_json
from ..control.resource_filter import Listed, page_of, parse_filter, parse_order, seconds
from ..errors import FailedPrecondition, InvalidArgument
from . import names
from .operations import VertexOperation, VertexOperations
from .prediction import reject_unknown_fields


class VertexModels:
    def __init__(self, control: ControlPlane, endpoints: EndpointControl, operations: VertexOperations):
        self.control = control
        self.endpoints = endpoints
        self.operations = operations

    async def upload(self, request: ms.UploadModelRequest, version: str) -> VertexOperation:
        reject_unknown_fields(request)
        parent = names.parent(request.parent)
        try:
            upload = payloads.upload_request(require_json(request, "model"))
        except payloads.PayloadError as e:
            raise InvalidArgument(e.message, field=e.field) from None
        return await self.upload_explaind(upload, parent, version)

    async def upload_explaind(self, upload: explaind_models.UploadModelRequest, parent: names.Parent,
                              version: str) -> VertexOperation:
        """An upload already read into explaind's request (the REST port reads its JSON so)."""
        check_labels(upload.model.labels, "model.labels")
        operation = await self.control.upload_model(upload)
        model_id = _explaind_model_of(operation)
        return await self.operations.track_explaind("upload", version, parent.model(model_id), operation)

    async def get(self, name: str) -> ms.Model:
        parent, model_id = names.resource(name, "models")
        model = await self.control.get_model(model_id)
        deployments = await asyncio.to_thread(self.endpoints.deployments_of, model_id)
        return vertex_model(model, parent, deployments)

    async def list(self, request: ms.ListModelsRequest) -> ms.ListModelsResponse:
        reject_unknown_fields(request)
        parent = names.parent(request.parent)
        wanted = parse_filter(request.filter)
        order = parse_order(request.order_by)
        everything = await self.control.list_models(0, "")
        models = list(everything.items)
        while everything.next_page_token:
            everything = await self.control.list_models(0, everything.next_page_token)
            models += everything.items
        listed = [(Listed(m.display_name, dict(m.labels), seconds(m.create_time), seconds(m.update_time)), m)
                  for m in models]
        listed = [pair for pair in listed if wanted(pair[0])]
        order(listed)
        page, token = page_of([m for _, m in listed], request.page_size, request.page_token)
        deployments = await asyncio.to_thread(self.endpoints.list) if page else []
        return ms.ListModelsResponse(
            models=[vertex_model(m, parent, _deployments_of(deployments, m)) for m in page], next_page_token=token)

    async def delete(self, name: str, version: str) -> VertexOperation:
        parent, model_id = names.resource(name, "models")

        async def work():
            deployed = await asyncio.to_thread(self.endpoints.deployments_of, model_id)
            if deployed:
                raise FailedPrecondition(
                    f"model {name[:300]} is deployed to "
                    f"{', '.join(sorted({parent.endpoint(e) for e, _ in deployed})[:5])}; "
                    "undeploy it first", field="name")
            await self.control.delete_model(model_id)
            return None
        return await self.operations.run("delete", version, parent.name, work())

    async def update_explanation_dataset(self, request: ms.UpdateExplanationDatasetRequest,
                                         version: str) -> VertexOperation:
        reject_unknown_fields(request)
        parent, model_id = names.resource(request.model, "models", field="model")
        update = explaind_models.UpdateExplanationDatasetRequest(model=f"models/{model_id}")
        update.examples.CopyFrom(request.examples)
        operation = await self.control.update_explanation_dataset(model_id, update)
        return await self.operations.track_explaind("update_dataset", version, parent.model(model_id), operation)


def vertex_model(model: model_pb2.Model, parent: names.Parent, deployments: list[tuple[str, str]]) -> ms.Model:
    """explaind's model record as Vertex's Model resource."""
    model_id = model.name.rpartition("/")[2]
    out = ms.Model(name=parent.model(model_id), display_name=model.display_name, description=model.description,
                   artifact_uri=model.artifact_uri, version_id="1", version_aliases=["default"],
                   supported_deployment_resources_types=[ms.Model.DEDICATED_RESOURCES],
                   deployed_models=[ms.DeployedModelRef(endpoint=parent.endpoint(e), deployed_model_id=d)
                                    for e, d in deployments])
    out.labels.update(model.labels)
    for field in ("create_time", "update_time"):
        getattr(out, field).CopyFrom(getattr(model, field))
    out.version_create_time.CopyFrom(model.create_time)
    out.version_update_time.CopyFrom(model.update_time)
    if model.HasField("explanation_spec"):
        out.explanation_spec.CopyFrom(model.explanation_spec)
    if model.HasField("container_spec"):
        out.container_spec.image_uri = model.container_spec.image_uri
        out.container_spec.command.extend(model.container_spec.command)
        out.container_spec.args.extend(model.container_spec.args)
    return out


def _deployments_of(records, model: model_pb2.Model) -> list[tuple[str, str]]:
    return [(r.endpoint_id, d.id) for r in records for d in r.endpoint.deployed_models if d.model == model.name]


def _explaind_model_of(operation) -> str:
    meta = explaind_models.UploadModelOperationMetadata()
    operation.metadata.Unpack(meta)
    return meta.model.rpartition("/")[2]
