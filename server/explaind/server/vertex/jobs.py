"""Vertex AI's JobService for batch prediction jobs (v1 and v1beta1, one set of
messages): a BatchPredictionJob is explaind's batch job (control/batch_jobs.py)
seen through Vertex's resource. Create reads the job into a BatchExplainRequest;
Get and List show the job's operation as Vertex's BatchPredictionJob, named
under the caller's project and location (explaind has one namespace).

    model                  projects/{p}/locations/{l}/models/{id}[@1] -> the model id
    input_config           instances_format and gcs_source.uris: any URI the uploads take
    output_config          predictions_format jsonl; gcs_destination.output_uri_prefix
    generate_explanation   false: predictions only
    explanation_spec       overrides the model's spec field by field, as Vertex does, by the rule of
                           a deployment's spec (control/deployments.py): attribution parameters,
                           input baselines, examples' neighbor_count; any other field it sets must
                           equal the model's
    dedicated_resources    accepted and ignored: the job runs on explaind's build runners
    model_parameters       refused unless empty
    manual_batch_tuning_parameters.batch_size   rows per model run
"""
from __future__ import annotations

import re

import grpc
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, json_format

from explaind.v1 import batch_service_pb2
from explaind.vertex.v1 import job_service_pb2 as js

from ..batch.manager import VERTEX_KEY, metadata_of, request_of
from ..control.batch_jobs import BatchJobs
from ..control.deployments import deployment_override
from ..control.resource_filter import Listed, page_of, parse_filter, seconds
from ..errors import ExplaindError, InvalidArgument
from ..serving.requests import reject_parameters
from ..store.operations import OperationRecord
from . import names
from .grpc_methods import operation_proto, register, unary_handlers
from .operations import VertexOperation, VertexOperations
from .prediction import reject_unknown_fields

VERSIONS = ("v1", "v1beta1")
SERVICES = tuple(f"google.cloud.aiplatform.{version}.JobService" for version in VERSIONS)
JOB = "batch_prediction_job"
State = batch_service_pb2.JobState
JOB_NAME = re.compile(rf"^(?P<parent>projects/{names.SEGMENT}/locations/{names.SEGMENT})"
                      r"/batchPredictionJobs/(?P<id>[A-Za-z0-9_-]{1,128})$")
SPEC = f"{JOB}.explanation_spec"
# explaind.v1 request fields -> the Vertex field an error names.
FIELDS = (("uris", f"{JOB}.input_config.gcs_source.uris"),
          ("instances_format", f"{JOB}.input_config.instances_format"),
          ("input_config", f"{JOB}.input_config"),
          ("output_uri_prefix", f"{JOB}.output_config.gcs_destination.output_uri_prefix"),
          ("explanation_spec_override", f"{JOB}.explanation_spec"),
          ("instance_config", f"{JOB}.instance_config"),
          ("batch_size", f"{JOB}.manual_batch_tuning_parameters.batch_size"),
          ("predictions_only", f"{JOB}.generate_explanation"),
          ("display_name", f"{JOB}.display_name"), ("labels", f"{JOB}.labels"), ("model", f"{JOB}.model"))


class VertexJobs:
    def __init__(self, jobs: BatchJobs, operations: VertexOperations):
        self.jobs = jobs
        self.operations = operations       # a delete answers one of Vertex's operations

    async def create(self, request: js.CreateBatchPredictionJobRequest) -> js.BatchPredictionJob:
        parent = names.parent(request.parent).name
        reject_unknown_fields(request)
        job = request.batch_prediction_job
        explain = explain_request(job)
        echo = {}
        if job.HasField("explanation_spec"):
            model = await self.jobs.published(explain.model.partition("/")[2])
            if model is not None:          # else the job's creation says NOT_FOUND
                # Over the model's spec field by field, as a deployment's (one rule: control/deployments.py).
                override = deployment_override(job.explanation_spec, model.model.explanation_spec, SPEC,
                                               "a batch job")
                if override is not None:
                    explain.explanation_spec_override.CopyFrom(override)
            echo["explanationSpec"] = json_format.MessageToDict(job.explanation_spec)
        with vertex_fields():
            record = await self.jobs.create(explain, echo)
        return job_view(record, parent)

    async def get(self, name: str) -> js.BatchPredictionJob:
        parent, job_id = job_name(name)
        record = await self.jobs.get(job_id)
        return job_view(record, parent, await self.jobs.cancelling(record))

    async def list(self, request: js.ListBatchPredictionJobsRequest) -> js.ListBatchPredictionJobsResponse:
        """Oldest first, filtered (resource_filter: display_name, labels and state) and paged as
        Vertex's other lists."""
        parent = names.parent(request.parent).name
        wanted = parse_filter(request.filter, states=tuple(State.keys()))
        records = await self.jobs.list()
        views = [job_view(r, parent, cancelling)
                 for r, cancelling in zip(records, await self.jobs.cancelling_each(records))]
        views.sort(key=lambda view: (seconds(view.create_time), view.name))
        page, token = page_of([v for v in views if wanted(_listed(v))], request.page_size, request.page_token)
        return js.ListBatchPredictionJobsResponse(batch_prediction_jobs=page, next_page_token=token)

    async def cancel(self, name: str) -> empty_pb2.Empty:
        _, job_id = job_name(name)
        await self.jobs.cancel(job_id)
        return empty_pb2.Empty()

    async def delete(self, name: str, version: str) -> VertexOperation:
        """Forgets an ended job (FAILED_PRECONDITION while it runs), as a Vertex operation done at once."""
        parent, job_id = job_name(name)
        record = await self.jobs.get(job_id)       # NOT_FOUND from the call itself, not the operation

        async def work():
            await self.jobs.delete(job_id, record)
            return empty_pb2.Empty()
        return await self.operations.run("delete", version, parent, work())


def job_name(name: str) -> tuple[str, str]:
    """(parent, job id) of projects/{p}/locations/{l}/batchPredictionJobs/{id}."""
    match = JOB_NAME.fullmatch(name)
    if match is None:
        raise InvalidArgument("expected 'projects/{project}/locations/{location}/batchPredictionJobs/{id}', "
                              f"got {name[:200]!r}", field="name")
    return match.group("parent"), match.group("id")


def model_id_of(name: str) -> str:
    """The model id of a model's resource name ("@1" accepted: explaind keeps one version)."""
    return names.resource(name, "models", field=f"{JOB}.model")[1]


def explain_request(job: js.BatchPredictionJob) -> batch_service_pb2.BatchExplainRequest:
    """The explaind.v1 request of a Vertex job (bounds and the model's spec are checked by the job's creation)."""
    if not job.display_name:
        raise InvalidArgument("a job needs a display name", field=f"{JOB}.display_name")
    reject_parameters(job.model_parameters if job.HasField("model_parameters") else None,
                      f"{JOB}.model_parameters")
    if job.output_config.predictions_format not in ("", "jsonl"):
        raise InvalidArgument(f"explaind writes jsonl, got {job.output_config.predictions_format[:50]!r}",
                              field=f"{JOB}.output_config.predictions_format")
    if not job.input_config.instances_format:
        raise InvalidArgument("the input's format is required (jsonl, csv, tf-record, tf-record-gzip or "
                              "file-list)", field=f"{JOB}.input_config.instances_format")
    if job.HasField("explanation_spec") and not job.generate_explanation:
        raise InvalidArgument("an explanation spec needs generate_explanation", field=f"{JOB}.explanation_spec")
    request = batch_service_pb2.BatchExplainRequest(
        model=f"models/{model_id_of(job.model)}", uris=list(job.input_config.gcs_source.uris),
        instances_format=job.input_config.instances_format,
        output_uri_prefix=job.output_config.gcs_destination.output_uri_prefix, display_name=job.display_name,
        labels=dict(job.labels), predictions_only=not job.generate_explanation,
        batch_size=job.manual_batch_tuning_parameters.batch_size)
    if job.HasField("instance_config"):
        request.instance_config.CopyFrom(job.instance_config)
    return request


def job_view(record: OperationRecord, parent: str, cancelling: bool = False) -> js.BatchPredictionJob:
    """The job's operation as Vertex's BatchPredictionJob (CANCELLING from the moment a cancel is asked)."""
    meta = metadata_of(record.operation)
    if cancelling:
        meta.state = State.JOB_STATE_CANCELLING
    request = request_of(record)
    echo = record.request.get(VERTEX_KEY, {})
    job = js.BatchPredictionJob(
        name=f"{parent}/batchPredictionJobs/{record.op_id}", display_name=request.display_name,
        model=f"{parent}/models/{meta.model.partition('/')[2]}", model_version_id="1",
        generate_explanation=not request.predictions_only, labels=dict(request.labels), state=meta.state)
    job.input_config.instances_format = request.instances_format or "jsonl"
    job.input_config.gcs_source.uris.extend(request.uris)
    if request.HasField("instance_config"):
        job.instance_config.CopyFrom(request.instance_config)
    job.output_config.predictions_format = "jsonl"
    job.output_config.gcs_destination.output_uri_prefix = request.output_uri_prefix
    if request.batch_size:
        job.manual_batch_tuning_parameters.batch_size = request.batch_size
    if "explanationSpec" in echo:
        json_format.ParseDict(echo["explanationSpec"], job.explanation_spec, ignore_unknown_fields=True)
    if meta.state == State.JOB_STATE_SUCCEEDED:
        job.output_info.gcs_output_directory = meta.output_directory
    if record.operation.done and record.operation.HasField("error"):
        job.error.CopyFrom(record.operation.error)
    job.partial_failures.extend(meta.partial_failures)
    stats = job.completion_stats
    stats.successful_count, stats.failed_count = meta.rows_succeeded, meta.rows_failed
    stats.incomplete_count = max(0, meta.rows_total - meta.rows_succeeded - meta.rows_failed)
    for name in ("create_time", "start_time", "end_time", "update_time"):
        if meta.HasField(name):
            getattr(job, name).CopyFrom(getattr(meta, name))
    return job


def _listed(view: js.BatchPredictionJob) -> Listed:
    return Listed(view.display_name, dict(view.labels), seconds(view.create_time), seconds(view.update_time),
                  State.Name(view.state))


# --- errors: explaind.v1 fields named as Vertex's ---
class vertex_fields:
    """Renames the field of an error raised inside to the Vertex job's field."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, ExplaindError) and error.field:
            for ours, theirs in FIELDS:
                if error.field == ours or error.field.startswith((ours + ".", ours + "[")):
                    error.field = theirs + error.field[len(ours):]
                    break
        return False


# --- gRPC: handlers under Vertex's service names ---
METHODS = {
    "CreateBatchPredictionJob": (js.CreateBatchPredictionJobRequest, js.BatchPredictionJob,
                                 lambda jobs, r, v: jobs.create(r)),
    "GetBatchPredictionJob": (js.GetBatchPredictionJobRequest, js.BatchPredictionJob,
                              lambda jobs, r, v: jobs.get(r.name)),
    "ListBatchPredictionJobs": (js.ListBatchPredictionJobsRequest, js.ListBatchPredictionJobsResponse,
                                lambda jobs, r, v: jobs.list(r)),
    "CancelBatchPredictionJob": (js.CancelBatchPredictionJobRequest, empty_pb2.Empty,
                                 lambda jobs, r, v: jobs.cancel(r.name)),
    "DeleteBatchPredictionJob": (js.DeleteBatchPredictionJobRequest, operations_pb2.Operation,
                                 lambda jobs, r, v: operation_proto(jobs.delete(r.name, v))),
}


def add_to_server(jobs: VertexJobs, server: grpc.aio.Server) -> None:
    register(server, unary_handlers({service: METHODS for service in SERVICES}, jobs))
