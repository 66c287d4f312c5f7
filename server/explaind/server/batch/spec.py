"""A BatchExplainRequest checked whole when the job is created, so a bad
request is INVALID_ARGUMENT (or NOT_FOUND, PERMISSION_DENIED...) naming its
field at once, never a job that fails later: the model (published, and able to
do what is asked), the input files (expanded under --allowed-uri-prefix), the
output prefix, the override (as an Explain call's would be checked), the
instance config and the bounds."""
from __future__ import annotations

import dataclasses
import math

from explaind.v1 import batch_service_pb2, explanation_pb2

from ..api import names
from ..attributions import parameters as attribution_parameters
from ..errors import FailedPrecondition, InvalidArgument, NotFound
from ..methods import Method, method_of
from ..security import uris as allowed_uris
from ..serving.requests import Limits, examples_query
from ..store.models import ModelRecord, ModelStore
from .instances import InstanceShape
from .rows import JSONL, InputFiles, check_format

MAX_URIS = 10_000
MAX_URI_CHARS = 2000
MAX_DISPLAY_NAME = 128
MAX_LABELS = 64
MAX_LABEL_CHARS = 63
OVERRIDE = "explanation_spec_override"


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What the job runs, read from a valid request."""
    record: ModelRecord               # the model as published now (the job explains with this build)
    files: InputFiles
    shape: InstanceShape
    override: explanation_pb2.ExplanationSpecOverride
    output_prefix: str                # as opened (a local prefix is its real path)
    explained: bool
    max_failed_fraction: float
    batch_size: int


def read_request(request: batch_service_pb2.BatchExplainRequest, models: ModelStore, limits: Limits,
                 default_fraction: float, default_batch_size: int, file_max_bytes: int) -> JobSpec:
    record = _published(models, names.model_id(request.model, field="model"))
    explained = not request.predictions_only
    method = method_of(record.model.explanation_spec.parameters)
    if not record.model.artifact_uri and not explained:
        raise FailedPrecondition(f"{record.model.name} is an index-only model (no artifact_uri): it has no "
                                 "predictions to make, only explanations", field="predictions_only")
    override = explanation_pb2.ExplanationSpecOverride()
    override.CopyFrom(request.explanation_spec_override)
    if explained:
        _check_override(override, record, method, limits)
    elif request.HasField("explanation_spec_override"):
        raise InvalidArgument("a job of predictions only explains nothing", field=OVERRIDE)
    instances_format = request.instances_format or JSONL
    check_format(instances_format, "instances_format")
    _check_uris(request.uris)
    files = InputFiles.expand(list(request.uris), instances_format, "uris", file_max_bytes)
    shape = InstanceShape.validated(request.instance_config, instances_format, "instance_config")
    _check_text(request.display_name, MAX_DISPLAY_NAME, "display_name")
    _check_labels(request.labels)
    return JobSpec(record=record, files=files, shape=shape, override=override,
                   output_prefix=_output_prefix(request.output_uri_prefix), explained=explained,
                   max_failed_fraction=_fraction(request.max_failed_fraction, default_fraction),
                   batch_size=_batch_size(request.batch_size, default_batch_size, limits))


def _published(models: ModelStore, model_id: str) -> ModelRecord:
    record = models.get_published(model_id)
    if record is not None:
        return record
    if models.get(model_id) is not None:
        raise FailedPrecondition(f"model models/{model_id} is still building; run the job once it is READY",
                                 field="model")
    raise NotFound(f"model models/{model_id[:200]} not found", field="model")


def _check_override(override: explanation_pb2.ExplanationSpecOverride, record: ModelRecord, method, limits) -> None:
    """As the online Explain checks its override (servables' check_override, the examples query,
    the attribution settings), at once instead of on every row."""
    name = record.model.name
    if method is Method.EXAMPLES:
        for part in ("parameters", "metadata"):
            if override.HasField(part):
                raise InvalidArgument(f"{name} explains by examples: attribution {part} do not apply "
                                      "(use examples_override)", field=f"{OVERRIDE}.{part}")
        examples = override.examples_override
        if examples.return_embeddings:
            raise InvalidArgument("the batch output's explanations (Vertex's Explanation) have no place for "
                                  "embeddings", field=f"{OVERRIDE}.examples_override.return_embeddings")
        examples_query(override, record.model.explanation_spec.parameters.examples.neighbor_count, limits)
        if not record.model.artifact_uri and examples.data_format != examples.DataFormat.EMBEDDINGS:
            raise FailedPrecondition(f"{name} is an index-only model (no artifact_uri): its rows must be "
                                     "embeddings (examples_override.data_format EMBEDDINGS)",
                                     field=f"{OVERRIDE}.examples_override.data_format")
        return
    if override.HasField("examples_override"):
        raise InvalidArgument(f"{name} has no examples: example overrides do not apply",
                              field=f"{OVERRIDE}.examples_override")
    try:
        attribution_parameters.resolve(record.model.explanation_spec.parameters,
                                       override.parameters if override.HasField("parameters") else None)
    except InvalidArgument as e:
        raise InvalidArgument(e.message, field=(e.field or "").replace("explanation_spec_override", OVERRIDE)) \
            from None


def _check_uris(uris) -> None:
    if not uris:
        raise InvalidArgument("at least one input uri is required", field="uris")
    if len(uris) > MAX_URIS:
        raise InvalidArgument(f"at most {MAX_URIS} uris, got {len(uris)}", field="uris")
    for i, uri in enumerate(uris):
        if len(uri) > MAX_URI_CHARS:
            raise InvalidArgument(f"at most {MAX_URI_CHARS} characters", field=f"uris[{i}]")


def _output_prefix(prefix: str) -> str:
    if not prefix.strip():
        raise InvalidArgument("the output prefix is required", field="output_uri_prefix")
    if len(prefix) > MAX_URI_CHARS or any(c in prefix for c in "*?[\n\r\0"):
        raise InvalidArgument(f"a folder URI of at most {MAX_URI_CHARS} characters, without glob characters",
                              field="output_uri_prefix")
    return allowed_uris.check(prefix.rstrip("/") or "/", "output_uri_prefix")


def _fraction(value: float, default: float) -> float:
    if math.isnan(value) or not 0 <= value <= 1:
        raise InvalidArgument(f"must be between 0 and 1, got {value}", field="max_failed_fraction")
    return value or default


def _batch_size(value: int, default: int, limits: Limits) -> int:
    most = limits.max_instances_per_request
    if not 0 <= value <= most:
        raise InvalidArgument(f"must be between 1 and {most} (--max-instances-per-request), got {value}",
                              field="batch_size")
    return value or min(default, most)


def _check_text(value: str, limit: int, field: str) -> None:
    if len(value) > limit:
        raise InvalidArgument(f"at most {limit} characters, got {len(value)}", field=field)


def _check_labels(labels) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"at most {MAX_LABELS} labels, got {len(labels)}", field="labels")
    for key, value in labels.items():
        if not key or len(key) > MAX_LABEL_CHARS or len(value) > MAX_LABEL_CHARS:
            raise InvalidArgument(f"keys are 1 to {MAX_LABEL_CHARS} characters and values at most "
                                  f"{MAX_LABEL_CHARS}", field=f"labels[{key[:64]}]")
