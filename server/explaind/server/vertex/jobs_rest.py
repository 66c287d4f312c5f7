"""Vertex's JobService (batch prediction jobs) on the REST port, as
google-cloud-aiplatform's REST transport calls it:

    POST   /{v}/projects/{p}/locations/{l}/batchPredictionJobs          body: a BatchPredictionJob
    GET    /{v}/projects/{p}/locations/{l}/batchPredictionJobs[?filter&pageSize&pageToken]
    GET    /{v}/projects/{p}/locations/{l}/batchPredictionJobs/{id}
    POST   /{v}/projects/{p}/locations/{l}/batchPredictionJobs/{id}:cancel
    DELETE /{v}/projects/{p}/locations/{l}/batchPredictionJobs/{id}

{v} is v1 or v1beta1. Each route needs the role of its gRPC twin (security/roles.py).
"""
from __future__ import annotations

from aiohttp import web
from google.protobuf import json_format

from explaind.client import payloads
from explaind.vertex.v1 import job_service_pb2 as js

from ..errors import InvalidArgument
from .jobs import JOB, VertexJobs

ROOT = "/{version:v1|v1beta1}/projects/{project:[^/:]+}/locations/{location:[^/:]+}/batchPredictionJobs"
JOB_ID = "/{job:[A-Za-z0-9_-]+}"
SERVICE = "/google.cloud.aiplatform.{version}.JobService/"
MAX_QUERY_CHARS = 2000


class JobRoutes:
    def __init__(self, jobs: VertexJobs):
        self.jobs = jobs

    def add_to(self, api) -> None:
        """Registers the routes on a vertex.rest.RestApi, each with its gRPC twin."""
        for method, path, handler, name, twin in (
                ("POST", ROOT, self.create, "create_batch_prediction_job", "CreateBatchPredictionJob"),
                ("GET", ROOT, self.list, "list_batch_prediction_jobs", "ListBatchPredictionJobs"),
                ("GET", ROOT + JOB_ID, self.get, "get_batch_prediction_job", "GetBatchPredictionJob"),
                ("POST", ROOT + JOB_ID + ":cancel", self.cancel, "cancel_batch_prediction_job",
                 "CancelBatchPredictionJob"),
                ("DELETE", ROOT + JOB_ID, self.delete, "delete_batch_prediction_job", "DeleteBatchPredictionJob")):
            api.app.router.add_route(method, path, handler, name=name)
            api.twins[name] = SERVICE + twin

    async def create(self, request: web.Request) -> web.Response:
        from .rest import _json_body          # one reader of JSON bodies (bounded, UTF-8, an object)
        try:
            job = payloads.parse(await _json_body(request), js.BatchPredictionJob(), JOB)
        except payloads.PayloadError as e:
            raise InvalidArgument(e.message, field=e.field or JOB) from None
        create = js.CreateBatchPredictionJobRequest(parent=_parent(request), batch_prediction_job=job)
        return _answer(await self.jobs.create(create))

    async def get(self, request: web.Request) -> web.Response:
        return _answer(await self.jobs.get(_name(request)))

    async def list(self, request: web.Request) -> web.Response:
        listing = js.ListBatchPredictionJobsRequest(parent=_parent(request), filter=_query(request, "filter"),
                                                    page_token=_query(request, "pageToken", "page_token"))
        size = _query(request, "pageSize", "page_size")
        if size:
            if not size.lstrip("-").isdigit() or len(size) > 10:
                raise InvalidArgument(f"expected an integer, got {size[:50]!r}", field="page_size")
            listing.page_size = max(-1, min(int(size), 2**31 - 1))
        return _answer(await self.jobs.list(listing))

    async def cancel(self, request: web.Request) -> web.Response:
        await self.jobs.cancel(_name(request))
        return _answer_json({})

    async def delete(self, request: web.Request) -> web.Response:
        return _answer_json((await self.jobs.delete(_name(request), request.match_info["version"])).to_json())


def _parent(request: web.Request) -> str:
    info = request.match_info
    return f"projects/{info['project']}/locations/{info['location']}"


def _name(request: web.Request) -> str:
    return f"{_parent(request)}/batchPredictionJobs/{request.match_info['job']}"


def _query(request: web.Request, camel: str, snake: str | None = None) -> str:
    value = request.query.get(camel, request.query.get(snake or camel, ""))
    if len(value) > MAX_QUERY_CHARS:
        raise InvalidArgument(f"at most {MAX_QUERY_CHARS} characters", field=snake or camel)
    return value


def _answer(message) -> web.Response:
    return _answer_json(json_format.MessageToDict(message))


def _answer_json(data: dict) -> web.Response:
    from .rest import _json
    return _json(data)
