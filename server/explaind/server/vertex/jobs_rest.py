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

from explaind.client import payloads
from explaind.vertex.v1 import job_service_pb2 as js

from ..errors import InvalidArgument
from .jobs import JOB, VertexJobs
from .rest_io import json_answer, json_body, list_query, message_answer

ROOT = "/{version:v1|v1beta1}/projects/{project:[^/:]+}/locations/{location:[^/:]+}/batchPredictionJobs"
JOB_ID = "/{job:[A-Za-z0-9_-]+}"
SERVICE = "/google.cloud.aiplatform.{version}.JobService/"


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
        try:
            job = payloads.parse(await json_body(request), js.BatchPredictionJob(), JOB)
        except payloads.PayloadError as e:
            raise InvalidArgument(e.message, field=e.field or JOB) from None
        create = js.CreateBatchPredictionJobRequest(parent=_parent(request), batch_prediction_job=job)
        return message_answer(await self.jobs.create(create))

    async def get(self, request: web.Request) -> web.Response:
        return message_answer(await self.jobs.get(_name(request)))

    async def list(self, request: web.Request) -> web.Response:
        listing = js.ListBatchPredictionJobsRequest(parent=_parent(request))
        list_query(request, listing)
        return message_answer(await self.jobs.list(listing))

    async def cancel(self, request: web.Request) -> web.Response:
        await self.jobs.cancel(_name(request))
        return json_answer({})

    async def delete(self, request: web.Request) -> web.Response:
        return json_answer((await self.jobs.delete(_name(request), request.match_info["version"])).to_json())


def _parent(request: web.Request) -> str:
    info = request.match_info
    return f"projects/{info['project']}/locations/{info['location']}"


def _name(request: web.Request) -> str:
    return f"{_parent(request)}/batchPredictionJobs/{request.match_info['job']}"

