"""Vertex's ModelService, EndpointService and operations on the REST port,
as google-cloud-aiplatform's REST transport calls them:

    GET    /{v}/projects/{p}/locations/{l}/models[?filter&pageSize&pageToken&orderBy]
    GET    /{v}/projects/{p}/locations/{l}/models/{m}[@1]
    DELETE /{v}/projects/{p}/locations/{l}/models/{m}
    POST   /{v}/projects/{p}/locations/{l}/models/{m}:updateExplanationDataset
    POST   /{v}/projects/{p}/locations/{l}/endpoints[?endpointId]
    GET    /{v}/projects/{p}/locations/{l}/endpoints[?filter&pageSize&pageToken&orderBy]
    GET    /{v}/projects/{p}/locations/{l}/endpoints/{e}
    PATCH  /{v}/projects/{p}/locations/{l}/endpoints/{e}?updateMask=...
    DELETE /{v}/projects/{p}/locations/{l}/endpoints/{e}
    POST   /{v}/projects/{p}/locations/{l}/endpoints/{e}:deployModel | :undeployModel
    GET    /{v or ui}/projects/{p}/locations/{l}[/models/{m} | /endpoints/{e}]/operations/{id}
           (POST ...:cancel, POST ...:wait, DELETE ...)

{v} is v1 or v1beta1; the transport's operations client polls under /ui/.
Each route needs the role of its gRPC twin (security/roles.py), as rest.py's do.
"""
from __future__ import annotations

from aiohttp import web
from google.protobuf import field_mask_pb2, json_format

from explaind.client import payloads
from explaind.vertex.v1 import endpoint_service_pb2 as es
from explaind.vertex.v1 import model_service_pb2 as ms

from ..errors import InvalidArgument
from . import names
from .endpoints_service import VertexEndpoints
from .models import VertexModels
from .operations import VertexOperations
from .rest_io import json_answer, list_query, message_answer, optional_json_body, query

ROOT = "/{version:v1|v1beta1}/projects/{project:[^/:]+}/locations/{location:[^/:]+}"
ANY_ROOT = "/{version:v1|v1beta1|ui}/projects/{project:[^/:]+}/locations/{location:[^/:]+}"
ID = "[A-Za-z0-9._-]+"
MODEL = "{model:[A-Za-z0-9._@-]+}"
ENDPOINT = "{endpoint:" + ID + "}"
OPERATION = "/operations/{operation:" + ID + "}"
OPERATIONS_ROLE = "/google.longrunning.Operations/{}"


def _service(name: str) -> str:
    return "/google.cloud.aiplatform.{version}." + name


class ResourceRoutes:
    """The routes' handlers; `add_to(api)` registers them and their gRPC twins on a RestApi."""

    def __init__(self, models: VertexModels, endpoints: VertexEndpoints, operations: VertexOperations):
        self.models = models
        self.endpoints = endpoints
        self.operations = operations

    def add_to(self, api) -> None:
        router = api.app.router
        routes = [
            ("GET", ROOT + "/models", self.list_models, "list_models", _service("ModelService/ListModels")),
            ("GET", ROOT + "/models/" + MODEL, self.get_model, "get_model", _service("ModelService/GetModel")),
            ("DELETE", ROOT + "/models/" + MODEL, self.delete_model, "delete_model",
             _service("ModelService/DeleteModel")),
            ("POST", ROOT + "/models/" + MODEL + ":updateExplanationDataset", self.update_dataset,
             "update_explanation_dataset", _service("ModelService/UpdateExplanationDataset")),
            ("POST", ROOT + "/endpoints", self.create_endpoint, "create_endpoint",
             _service("EndpointService/CreateEndpoint")),
            ("GET", ROOT + "/endpoints", self.list_endpoints, "list_endpoints",
             _service("EndpointService/ListEndpoints")),
            ("GET", ROOT + "/endpoints/" + ENDPOINT, self.get_endpoint, "get_endpoint",
             _service("EndpointService/GetEndpoint")),
            ("PATCH", ROOT + "/endpoints/" + ENDPOINT, self.update_endpoint, "update_endpoint",
             _service("EndpointService/UpdateEndpoint")),
            ("DELETE", ROOT + "/endpoints/" + ENDPOINT, self.delete_endpoint, "delete_endpoint",
             _service("EndpointService/DeleteEndpoint")),
            ("POST", ROOT + "/endpoints/" + ENDPOINT + ":deployModel", self.deploy, "deploy_model",
             _service("EndpointService/DeployModel")),
            ("POST", ROOT + "/endpoints/" + ENDPOINT + ":undeployModel", self.undeploy, "undeploy_model",
             _service("EndpointService/UndeployModel")),
        ]
        # Operations under every resource and version; rest.py serves /v1|v1beta1 .../operations/{id}
        # and .../models/{m}/operations/{id} (GET) itself, through the same view.
        for prefix, tag in (("/ui/projects/{project:[^/:]+}/locations/{location:[^/:]+}", "ui"),
                            (ANY_ROOT + "/models/{model:" + ID + "}", "ui_model"),
                            (ANY_ROOT + "/endpoints/" + ENDPOINT, "endpoint")):
            routes.append(("GET", prefix + OPERATION, self.get_operation, f"get_operation_{tag}",
                           OPERATIONS_ROLE.format("GetOperation")))
        for prefix, tag in ((ANY_ROOT, "any"), (ANY_ROOT + "/models/{model:" + ID + "}", "model"),
                            (ANY_ROOT + "/endpoints/" + ENDPOINT, "endpoint")):
            routes += [
                ("POST", prefix + OPERATION + ":cancel", self.cancel_operation, f"cancel_operation_{tag}",
                 OPERATIONS_ROLE.format("CancelOperation")),
                ("POST", prefix + OPERATION + ":wait", self.wait_operation, f"wait_operation_{tag}",
                 OPERATIONS_ROLE.format("WaitOperation")),
                ("DELETE", prefix + OPERATION, self.delete_operation, f"delete_operation_{tag}",
                 OPERATIONS_ROLE.format("DeleteOperation")),
            ]
        for method, path, handler, name, twin in routes:
            try:
                router.add_route(method, path, handler, name=name)
            except ValueError:          # rest.py serves it already (GET /v1/.../models/{m}/operations/{id})
                continue
            api.twins[name] = twin

    # --- models ---
    async def upload(self, request: web.Request, body: dict) -> web.Response:
        """rest.py's models:upload route, answered as a Vertex operation."""
        try:
            upload = payloads.upload_request(body)
        except payloads.PayloadError as e:
            raise InvalidArgument(e.message, field=e.field) from None
        parent = _parent(request)
        upload.parent = parent.name
        return json_answer((await self.models.upload_explaind(upload, parent, request.match_info["version"])).to_json())

    async def get_model(self, request: web.Request) -> web.Response:
        return message_answer(await self.models.get(_name(request, "models", request.match_info["model"])))

    async def list_models(self, request: web.Request) -> web.Response:
        list_request = ms.ListModelsRequest(parent=_parent(request).name)
        list_query(request, list_request)
        return message_answer(await self.models.list(list_request))

    async def delete_model(self, request: web.Request) -> web.Response:
        name = _name(request, "models", request.match_info["model"])
        return json_answer((await self.models.delete(name, request.match_info["version"])).to_json())

    async def update_dataset(self, request: web.Request) -> web.Response:
        update = _parse(await optional_json_body(request), ms.UpdateExplanationDatasetRequest())
        update.model = _name(request, "models", request.match_info["model"])
        return json_answer((await self.models.update_explanation_dataset(update, request.match_info["version"])).to_json())

    # --- endpoints ---
    async def create_endpoint(self, request: web.Request) -> web.Response:
        create = es.CreateEndpointRequest(parent=_parent(request).name,
                                          endpoint_id=query(request, "endpointId", "endpoint_id"))
        _parse(await optional_json_body(request), create.endpoint, "endpoint")
        return json_answer((await self.endpoints.create(create, request.match_info["version"])).to_json())

    async def get_endpoint(self, request: web.Request) -> web.Response:
        return message_answer(await self.endpoints.get(_name(request, "endpoints", request.match_info["endpoint"])))

    async def list_endpoints(self, request: web.Request) -> web.Response:
        list_request = es.ListEndpointsRequest(parent=_parent(request).name)
        list_query(request, list_request)
        return message_answer(await self.endpoints.list(list_request))

    async def update_endpoint(self, request: web.Request) -> web.Response:
        update = es.UpdateEndpointRequest()
        _parse(await optional_json_body(request), update.endpoint, "endpoint")
        update.endpoint.name = _name(request, "endpoints", request.match_info["endpoint"])
        mask = query(request, "updateMask", "update_mask")
        try:
            update.update_mask.CopyFrom(json_format.Parse(f'"{mask}"', field_mask_pb2.FieldMask())
                                        if mask else field_mask_pb2.FieldMask())
        except json_format.ParseError as e:
            raise InvalidArgument(str(e)[:300], field="update_mask") from None
        return message_answer(await self.endpoints.update(update))

    async def delete_endpoint(self, request: web.Request) -> web.Response:
        name = _name(request, "endpoints", request.match_info["endpoint"])
        return json_answer((await self.endpoints.delete(name, request.match_info["version"])).to_json())

    async def deploy(self, request: web.Request) -> web.Response:
        deploy = _parse(await optional_json_body(request), es.DeployModelRequest())
        deploy.endpoint = _name(request, "endpoints", request.match_info["endpoint"])
        return json_answer((await self.endpoints.deploy(deploy, request.match_info["version"])).to_json())

    async def undeploy(self, request: web.Request) -> web.Response:
        undeploy = _parse(await optional_json_body(request), es.UndeployModelRequest())
        undeploy.endpoint = _name(request, "endpoints", request.match_info["endpoint"])
        return json_answer((await self.endpoints.undeploy(undeploy, request.match_info["version"])).to_json())

    # --- operations ---
    async def get_operation(self, request: web.Request) -> web.Response:
        version = request.match_info.get("version", "v1")
        view = await self.operations.get(_operation_name(request), "" if version == "ui" else version)
        return json_answer(view.to_json())

    async def wait_operation(self, request: web.Request) -> web.Response:
        body = await optional_json_body(request)
        timeout = body.get("timeout")
        seconds = None
        if timeout is not None:
            try:
                seconds = float(str(timeout).rstrip("s"))
            except ValueError:
                raise InvalidArgument(f"expected a duration such as \"30s\", got {str(timeout)[:50]!r}",
                                      field="timeout") from None
            if not 0 <= seconds <= 3600:
                raise InvalidArgument("must be between 0 and 3600 seconds", field="timeout")
        return json_answer((await self.operations.wait(_operation_name(request), seconds)).to_json())

    async def cancel_operation(self, request: web.Request) -> web.Response:
        await self.operations.cancel(_operation_name(request))
        return json_answer({})

    async def delete_operation(self, request: web.Request) -> web.Response:
        await self.operations.delete(_operation_name(request))
        return json_answer({})


def _parent(request: web.Request) -> names.Parent:
    info = request.match_info
    return names.parent(f"projects/{info['project']}/locations/{info['location']}")


def _name(request: web.Request, collection: str, resource_id: str) -> str:
    return f"{_parent(request).name}/{collection}/{resource_id}"


def _operation_name(request: web.Request) -> str:
    info = request.match_info
    middle = f"/models/{info['model']}" if "model" in info else \
        f"/endpoints/{info['endpoint']}" if "endpoint" in info else ""
    return f"{_parent(request).name}{middle}/operations/{info['operation']}"


def _parse(body: dict, message, path: str = ""):
    try:
        return json_format.ParseDict(body, message)
    except json_format.ParseError as e:
        raise InvalidArgument(str(e)[:500], field=path or "body") from None
    except RecursionError:
        raise InvalidArgument("the body is nested too deeply", field="body") from None

