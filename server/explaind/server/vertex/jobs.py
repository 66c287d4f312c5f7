"""Vertex AI's JobService for batch prediction jobs (v1 and v1beta1, one set of
messages): a BatchPredictionJob is explaind's batch job (control/batch_jobs.py)
seen through Vertex's resource. Create reads the job into a BatchExplainRequest;
Get and List show the job's operation as Vertex's BatchPredictionJob, named
under the caller's project and location (explaind has one namespace).

    model                  projects/{p}/locations/{l}/models/{id}[@1] -> the model id
    input_config           instances_format and gcs_source.uris: any URI the uploads take
    output_config          predictions_format jsonl; gcs_destination.output_uri_prefix
    generate_explanation   false: predictions only
    explanation_spec       overrides the model's spec field by field, as Vertex does: parameters
                           as an Explain override's; of the metadata, input_baselines (other
                           fields equal to the model's, else refused); for example-based models,
                           parameters.examples.neighbor_count (presets and the search config are
                           the index's: equal to the model's, else refused)
    model_parameters       refused unless empty
    manual_batch_tuning_parameters.batch_size   rows per model run
"""
from __future__ import annotations

import re
import uuid

import grpc
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, json_format

from explaind.v1 import batch_service_pb2, explanation_pb2
from explaind.vertex.v1 import job_service_pb2 as js

from ..api import names
from ..api.status import translate_errors
from ..batch.manager import VERTEX_KEY, metadata_of, request_of
from ..control import page_tokens
from ..control.batch_jobs import BatchJobs
from ..errors import ExplaindError, InvalidArgument
from ..methods import Method, method_of
from ..serving.requests import reject_parameters
from ..store.operations import OperationRecord
from .prediction import reject_unknown_fields

VERSIONS = ("v1", "v1beta1")
SERVICES = tuple(f"google.cloud.aiplatform.{version}.JobService" for version in VERSIONS)
JOB = "batch_prediction_job"
State = batch_service_pb2.JobState
SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
PARENT = re.compile(rf"^projects/(?P<project>{SEGMENT})/locations/(?P<location>{SEGMENT})$")
JOB_NAME = re.compile(rf"^(?P<parent>projects/{SEGMENT}/locations/{SEGMENT})/batchPredictionJobs/(?P<id>[A-Za-z0-9_-]{{1,128}})$")
MODEL_VERSIONS = ("1", "default")   # explaind keeps one version of a model
DEFAULT_PAGE = 100
MAX_PAGE = 1000
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
    def __init__(self, jobs: BatchJobs):
        self.jobs = jobs

    async def create(self, request: js.CreateBatchPredictionJobRequest) -> js.BatchPredictionJob:
        parent = parent_of(request.parent)
        reject_unknown_fields(request)
        job = request.batch_prediction_job
        explain = explain_request(job)
        echo = {}
        if job.HasField("explanation_spec"):
            model = await self.jobs.published(explain.model.partition("/")[2])
            if model is not None:          # else the job's creation says NOT_FOUND
                check_against(job.explanation_spec, model.model.explanation_spec)
            echo["explanationSpec"] = json_format.MessageToDict(job.explanation_spec)
        with vertex_fields():
            record = await self.jobs.create(explain, echo)
        return job_view(record, parent)

    async def get(self, name: str) -> js.BatchPredictionJob:
        parent, job_id = job_name(name)
        return job_view(await self.jobs.get(job_id), parent)

    async def list(self, request: js.ListBatchPredictionJobsRequest) -> js.ListBatchPredictionJobsResponse:
        parent = parent_of(request.parent)
        wanted = parse_filter(request.filter)
        if request.page_size < 0:
            raise InvalidArgument(f"must be >= 0, got {request.page_size}", field="page_size")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        after = page_tokens.decode(request.page_token)
        response = js.ListBatchPredictionJobsResponse()
        views = [job_view(r, parent) for r in await self.jobs.list() if r.op_id > after]
        matching = [(view.name.rpartition("/")[2], view) for view in views if wanted(view)]
        for job_id, view in matching[:size]:
            response.batch_prediction_jobs.append(view)
        if len(matching) > size:
            response.next_page_token = page_tokens.encode(matching[size - 1][0])
        return response

    async def cancel(self, name: str) -> empty_pb2.Empty:
        _, job_id = job_name(name)
        await self.jobs.cancel(job_id)
        return empty_pb2.Empty()

    async def delete(self, name: str, version: str) -> operations_pb2.Operation:
        """Forgets an ended job; Vertex answers an operation, done at once here."""
        parent, job_id = job_name(name)
        await self.jobs.delete(job_id)
        operation = operations_pb2.Operation(name=f"{parent}/operations/{uuid.uuid4().int % 10**18}", done=True)
        operation.metadata.CopyFrom(any_pb2.Any(
            type_url=f"type.googleapis.com/google.cloud.aiplatform.{version}.DeleteOperationMetadata"))
        operation.response.Pack(empty_pb2.Empty())
        return operation


def parent_of(name: str) -> str:
    if PARENT.fullmatch(name) is None:
        raise InvalidArgument(f"expected 'projects/{{project}}/locations/{{location}}', got {name[:200]!r}",
                              field="parent")
    return name


def job_name(name: str) -> tuple[str, str]:
    """(parent, job id) of projects/{p}/locations/{l}/batchPredictionJobs/{id}."""
    match = JOB_NAME.fullmatch(name)
    if match is None:
        raise InvalidArgument("expected 'projects/{project}/locations/{location}/batchPredictionJobs/{id}', "
                              f"got {name[:200]!r}", field="name")
    return match.group("parent"), match.group("id")


def model_id_of(name: str) -> str:
    base, _, version = name.partition("@")
    if version and version not in MODEL_VERSIONS:
        raise InvalidArgument(f"explaind keeps one version of a model (@1); got @{version[:50]}", field=f"{JOB}.model")
    return names.model_id(base, field=f"{JOB}.model")


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
    if job.HasField("explanation_spec"):
        request.explanation_spec_override.CopyFrom(SpecOverride(job.explanation_spec).override())
    return request


class SpecOverride:
    """A job's explanation_spec as an Explain override. The model's spec is compared where
    a field cannot be overridden; the job's creation does that (`check_against`)."""

    def __init__(self, spec: explanation_pb2.ExplanationSpec):
        self.spec = spec

    def override(self) -> explanation_pb2.ExplanationSpecOverride:
        out = explanation_pb2.ExplanationSpecOverride()
        parameters = self.spec.parameters
        if method_of(parameters) is Method.EXAMPLES:
            for field in ("top_k", "output_indices"):
                if parameters.HasField(field) if field == "output_indices" else getattr(parameters, field):
                    raise InvalidArgument("does not apply to example-based explanations",
                                          field=f"{JOB}.explanation_spec.parameters.{field}")
            if parameters.examples.neighbor_count:
                out.examples_override.neighbor_count = parameters.examples.neighbor_count
        elif self.spec.HasField("parameters"):
            out.parameters.CopyFrom(parameters)
        for name, entry in self.spec.metadata.inputs.items():
            if len(entry.input_baselines):
                out.metadata.inputs[name].input_baselines.extend(entry.input_baselines)
        return out


def check_against(spec: explanation_pb2.ExplanationSpec, model_spec: explanation_pb2.ExplanationSpec) -> None:
    """INVALID_ARGUMENT for a part of a job's spec that differs from the model's and no
    Explain override can change: the index's build settings, the metadata beyond baselines."""
    field = f"{JOB}.explanation_spec"
    if method_of(spec.parameters) is Method.EXAMPLES:
        ours, theirs = spec.parameters.examples, model_spec.parameters.examples
        for name in ("presets", "nearest_neighbor_search_config", "gcs_source", "example_gcs_source"):
            if ours.HasField(name) and getattr(ours, name) != getattr(theirs, name):
                raise InvalidArgument("is the index's, fixed when the model was uploaded: leave it unset (or "
                                      "as the model's), or upload the model again with it",
                                      field=f"{field}.parameters.examples.{name}")
    metadata, model_metadata = spec.metadata, model_spec.metadata
    for part in ("outputs", "feature_attributions_schema_uri", "latent_space_source"):
        if _set(metadata, part) and getattr(metadata, part) != getattr(model_metadata, part):
            raise InvalidArgument("cannot differ from the model's (only input_baselines can be overridden)",
                                  field=f"{field}.metadata.{part}")
    for name, entry in metadata.inputs.items():
        model_entry = model_metadata.inputs.get(name)
        for descriptor, value in entry.ListFields():
            if descriptor.name == "input_baselines":
                continue
            if model_entry is None or getattr(model_entry, descriptor.name) != value:
                raise InvalidArgument("cannot differ from the model's (only input_baselines can be overridden)",
                                      field=f"{field}.metadata.inputs[{name}].{descriptor.name}")


def _set(message, name: str) -> bool:
    value = getattr(message, name)
    return len(value) > 0 if hasattr(value, "__len__") else bool(value)


def job_view(record: OperationRecord, parent: str) -> js.BatchPredictionJob:
    """The job's operation as Vertex's BatchPredictionJob."""
    meta = metadata_of(record.operation)
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


# --- filter: state, display_name and labels, as Vertex lists jobs ---
TOKEN = re.compile(r'\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<op>!=|=)|(?P<word>[^\s"=!]+))')
FIELD = re.compile(r"^(state|display_name|displayName|labels\.[A-Za-z0-9_.-]{1,63})$")
MAX_FILTER_CHARS = 2000


def parse_filter(text: str):
    """`filter` of ListBatchPredictionJobs: terms `state=JOB_STATE_SUCCEEDED`, `display_name="a job"`,
    `labels.team=vision` (= or !=; NOT or - before a term), joined by AND, or by OR (not both).
    Anything else is INVALID_ARGUMENT naming `filter`."""
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidArgument(f"at most {MAX_FILTER_CHARS} characters, got {len(text)}", field="filter")
    tokens = _tokens(text)
    terms, joins = [], set()
    while tokens:
        terms.append(_term(tokens))
        if tokens:
            join = tokens.pop(0)
            if join not in (("word", "AND"), ("word", "OR")) or not tokens:
                raise InvalidArgument(f"expected AND or OR between two terms, got {join[1][:60]!r}", field="filter")
            joins.add(join[1])
    if len(joins) > 1:
        raise InvalidArgument("join terms by AND or by OR, not both", field="filter")
    joined = any if joins == {"OR"} else all
    return lambda job: joined(term(job) for term in terms)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, position = [], 0
    while text[position:].strip():
        match = TOKEN.match(text, position)
        if match is None:
            raise InvalidArgument(f"cannot read {text[position:position + 40]!r}", field="filter")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        position = match.end()
    return out


def _term(tokens: list[tuple[str, str]]):
    negated = False
    if tokens and tokens[0] in (("word", "NOT"), ("word", "-")):
        negated = bool(tokens.pop(0))
    elif tokens and tokens[0][0] == "word" and tokens[0][1].startswith("-"):
        negated, tokens[0] = True, ("word", tokens[0][1][1:])
    if len(tokens) < 3 or tokens[0][0] != "word" or not FIELD.match(tokens[0][1]) or tokens[1][0] != "op" \
            or tokens[2][0] == "op":
        shown = " ".join(value for _, value in tokens[:3])
        raise InvalidArgument(f"cannot read {shown[:100]!r}; filter on state, display_name or labels.KEY with = "
                              "or !=", field="filter")
    (_, key), (_, operator), (_, value) = tokens.pop(0), tokens.pop(0), tokens.pop(0)
    if key == "state":
        if value not in State.keys():
            raise InvalidArgument(f"unknown state {value[:60]!r}; one of {', '.join(State.keys())}", field="filter")
        wanted = State.Value(value)
        read = lambda job: job.state == wanted  # noqa: E731
    elif key in ("display_name", "displayName"):
        read = lambda job: job.display_name == value  # noqa: E731
    else:
        label = key.partition(".")[2]
        read = lambda job: job.labels.get(label) == value  # noqa: E731
    equal = operator == "="
    return lambda job: (read(job) == equal) != negated


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
                                 lambda jobs, r, v: jobs.delete(r.name, v)),
}


def _handler(jobs: VertexJobs, behaviour, version: str):
    @translate_errors
    async def handle(_, request, context):
        return await behaviour(jobs, request, version)

    async def call(request, context):         # grpc.aio awaits only coroutine functions
        return await handle(None, request, context)
    return call


def add_to_server(jobs: VertexJobs, server: grpc.aio.Server) -> None:
    for service in SERVICES:
        version = service.split(".")[3]
        methods = {name: grpc.unary_unary_rpc_method_handler(
            _handler(jobs, behaviour, version), request_deserializer=request.FromString,
            response_serializer=response.SerializeToString)
            for name, (request, response, behaviour) in METHODS.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
        server.add_registered_method_handlers(service, methods)
