"""Vertex AI's REST API on its own port (`--http-port`), for the curl calls and
scripts written against Vertex: upload, operation polling, explain, predict.

    POST /{v1,v1beta1}/projects/{p}/locations/{l}/models:upload
    GET  /{v1,v1beta1}/projects/{p}/locations/{l}/operations/{id}
    GET  /{v1,v1beta1}/projects/{p}/locations/{l}/models/{m}/operations/{id}
    POST /{v1,v1beta1}/projects/{p}/locations/{l}/endpoints/{e}:explain
    POST /{v1,v1beta1}/projects/{p}/locations/{l}/endpoints/{e}:predict

Bodies and answers are Vertex's JSON (the protobuf JSON mapping, camelCase
out); errors are Google's REST error objects. aiohttp serves HTTP inside the
daemon's event loop; handlers only translate and call the control plane or
VertexPrediction. The port speaks TLS with the gRPC port's certificate when
one is configured. Every call goes through the daemon's Admission, the one
the gRPC port uses (request id, access log, auth, drain, the concurrency
limit shared by both ports); each route needs the role of its gRPC twin
(`GRPC_TWINS`: bearer tokens in the Authorization header, or the client
certificate under mutual TLS).
"""
from __future__ import annotations

import logging
import time

import grpc
from aiohttp import web
from google.longrunning import operations_pb2
from google.protobuf import json_format

from explaind.client import payloads
from explaind.v1 import model_service_pb2
from explaind.vertex.v1 import prediction_service_pb2 as v1
from explaind.vertex.v1beta1 import prediction_service_pb2 as v1beta1

from ..admission import REQUEST_ID_KEY, Admission, request_id_of
from ..api.status import status_of
from ..control.control_plane import ControlPlane
from ..errors import ExplaindError, InvalidArgument, NotFound
from ..logging_setup import request_id_var
from ..security.auth import http_certificate_names
from ..store.operations import model_of
from .prediction import VertexPrediction
from .rest_io import json_answer, json_body, message_answer

log = logging.getLogger(__name__)

PARENT = "/{version:v1|v1beta1}/projects/{project:[^/:]+}/locations/{location:[^/:]+}"
ID = "[A-Za-z0-9._-]+"
# Route -> the gRPC method whose role (security/roles.py) it needs.
GRPC_TWINS = {
    "upload": "/explaind.v1.ModelService/UploadModel",
    "get_operation": "/google.longrunning.Operations/GetOperation",
    "get_model_operation": "/google.longrunning.Operations/GetOperation",
    "explain": "/google.cloud.aiplatform.{version}.PredictionService/Explain",
    "predict": "/google.cloud.aiplatform.v1.PredictionService/Predict",
}

# google.rpc.Code -> HTTP status, as Google's REST APIs answer.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DATA_LOSS: 500,
}


class RestApi:
    """The aiohttp application and its listening site."""

    def __init__(self, vertex: VertexPrediction, control: ControlPlane, admission: Admission, *,
                 max_body_bytes: int, ssl_context=None, resources=None, jobs=None):
        """`admission`: the daemon's, shared with the gRPC port; `ssl_context`: TLS
        for the port (None: plain HTTP); `resources`: vertex/resources_rest.ResourceRoutes
        (models, endpoints, operations as Vertex's resources); `jobs`:
        vertex/jobs_rest.JobRoutes (Vertex's JobService: batch prediction jobs)."""
        self.vertex = vertex
        self.twins = dict(GRPC_TWINS)
        self.resources = resources
        self.control = control
        self.admission = admission
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[self._admit])
        self.app.router.add_post(PARENT + "/models:upload", self.upload, name="upload")
        self.app.router.add_get(PARENT + "/operations/{operation:" + ID + "}", self.get_operation,
                                name="get_operation")
        self.app.router.add_get(PARENT + "/models/{model:" + ID + "}/operations/{operation:" + ID + "}",
                                self.get_operation, name="get_model_operation")
        self.app.router.add_post(PARENT + "/endpoints/{endpoint:" + ID + "}:explain", self.explain, name="explain")
        self.app.router.add_post(PARENT + "/endpoints/{endpoint:" + ID + "}:predict", self.predict, name="predict")
        if resources is not None:
            resources.add_to(self)
        if jobs is not None:
            jobs.add_to(self)

    async def start(self, host: str, port: int, shutdown_grace_s: float) -> int:
        """Listens (SO_REUSEPORT, like the gRPC port, for --workers); returns the bound port."""
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=shutdown_grace_s,
                                     handle_signals=False)
        await self._runner.setup()
        # "[::]" (all interfaces, as gRPC reads it): None makes asyncio listen on IPv4 and IPv6.
        bind = None if host in ("[::]", "::", "") else host.strip("[]")
        site = web.TCPSite(self._runner, bind, port, reuse_port=True, ssl_context=self.ssl_context)
        await site.start()
        return self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- routes ---
    async def upload(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        if self.resources is not None:
            return await self.resources.upload(request, body)
        try:
            upload = payloads.upload_request(body)
        except payloads.PayloadError as e:
            raise InvalidArgument(e.message, field=e.field) from None
        info = request.match_info
        upload.parent = f"projects/{info['project']}/locations/{info['location']}"
        operation = await self.control.upload_model(upload)
        return json_answer(operation_json(operation, info))

    async def get_operation(self, request: web.Request) -> web.Response:
        if self.resources is not None:
            return await self.resources.get_operation(request)
        info = request.match_info
        operation = await self.control.get_operation(f"operations/{info['operation']}")
        if "model" in info and _model_id_of(operation) != info["model"]:
            raise NotFound(f"operation {info['operation']!r} of model {info['model']!r} not found", field="name")
        return json_answer(operation_json(operation, info))

    async def explain(self, request: web.Request) -> web.Response:
        message = v1beta1.ExplainRequest() if request.match_info["version"] == "v1beta1" else v1.ExplainRequest()
        explain = _parse(await json_body(request), message)
        explain.endpoint = _endpoint_name(request)
        return message_answer(await self.vertex.explain(explain, None))

    async def predict(self, request: web.Request) -> web.Response:
        predict = _parse(await json_body(request), v1.PredictRequest())
        predict.endpoint = _endpoint_name(request)
        return message_answer(await self.vertex.predict(predict, None))

    # --- every call: admission (request id, auth, drain, limit, access log), metrics, errors ---
    @web.middleware
    async def _admit(self, request: web.Request, handler):
        admission, metrics = self.admission, self.admission.metrics
        request_id = request_id_of(request.headers.get(REQUEST_ID_KEY))
        token = request_id_var.set(request_id)
        route = request.match_info.route.name or "unmatched"
        start = time.perf_counter()
        try:
            twin = self.twins.get(route)      # None (no route matched): nothing to authorize, 404 follows
            method = twin.format(version=request.match_info.get("version", "v1")) if twin else None
            refusal = admission.admit(method, lambda: _credentials(request))
            if refusal is not None:
                response = error_response(refusal.code, refusal.message)
            else:
                try:
                    response = await self._answer(request, handler)
                finally:
                    admission.release()
                    admission.done()
        finally:
            request_id_var.reset(token)
        response.headers[REQUEST_ID_KEY] = request_id
        seconds = time.perf_counter() - start
        if metrics is not None:
            metrics.http_requests.labels(route, str(response.status)).inc()
            metrics.http_request_seconds.labels(route).observe(seconds)
        admission.log_call(f"{request.method} {request.path[:300]}", response.status, response.status >= 500,
                           seconds, request_id, request.remote or "")
        return response

    async def _answer(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ExplaindError as e:
            return error_response(e.code, str(e), status_of(e))
        except web.HTTPRequestEntityTooLarge as e:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT, e.text, http_status=413)
        except web.HTTPException as e:          # no such route (404), wrong method (405)
            code = grpc.StatusCode.NOT_FOUND if e.status == 404 else grpc.StatusCode.INVALID_ARGUMENT
            return error_response(code, f"{request.method} {request.path[:300]}: {e.reason}", http_status=e.status)
        except Exception as e:  # noqa: BLE001 - a bug still answers a status that says what happened
            log.exception("unexpected error in %s", request.path[:300])
            return error_response(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e} (a server bug; see the log)")


def _credentials(request: web.Request):
    """What the Authorizer reads from an HTTP call: the Authorization headers and,
    under mutual TLS, the verified client certificate."""
    names, shown = http_certificate_names(request.transport.get_extra_info("peercert")
                                          if request.transport is not None else None)
    return request.headers.getall("Authorization", []), names, shown


def operation_json(operation: operations_pb2.Operation, info) -> dict:
    """An explaind upload operation as Vertex's REST API shows it: a Vertex
    operation name, UploadModelOperationMetadata and UploadModelResponse."""
    meta = model_service_pb2.UploadModelOperationMetadata()
    operation.metadata.Unpack(meta)
    prefix = f"projects/{info['project']}/locations/{info['location']}"
    model = f"{prefix}/models/{_model_id_of(operation)}"
    types = f"type.googleapis.com/google.cloud.aiplatform.{info['version']}"
    out = {"name": f"{model}/operations/{operation.name.rpartition('/')[2]}",
           "metadata": {"@type": f"{types}.UploadModelOperationMetadata",
                        "genericMetadata": {"createTime": meta.create_time.ToJsonString(),
                                            "updateTime": meta.update_time.ToJsonString()}}}
    if operation.done:
        out["done"] = True
        if operation.HasField("error"):
            out["error"] = json_format.MessageToDict(operation.error)
        else:
            out["response"] = {"@type": f"{types}.UploadModelResponse", "model": model}
    return out


def _model_id_of(operation: operations_pb2.Operation) -> str:
    return model_of(operation).rpartition("/")[2]


def _endpoint_name(request: web.Request) -> str:
    info = request.match_info
    return f"projects/{info['project']}/locations/{info['location']}/endpoints/{info['endpoint']}"


def _parse(body, message):
    try:
        return payloads.parse_with_instances(body, message)
    except payloads.PayloadError as e:
        raise InvalidArgument(e.message, field=e.field or None) from None


def error_response(code: grpc.StatusCode, message: str, status=None, http_status: int | None = None) -> web.Response:
    """Google's REST error object: {"error": {"code", "message", "status", "details"}}."""
    error = {"code": http_status or HTTP_STATUS.get(code, 500), "message": message, "status": code.name}
    if status is not None and status.details:
        error["details"] = [json_format.MessageToDict(d) for d in status.details]
    return json_answer({"error": error}, status=error["code"])

