"""Vertex AI JSON payloads, read as Vertex reads them, into explaind messages.

The payloads in Vertex's documentation parse unchanged: field names in
camelCase or snake_case, enum values in any case (`"modality": "tabular"`,
`"query": "precise"`), a whole request body or its bare `model` /
`instances`. A field explaind does not understand is an error naming it,
never dropped; the few Vertex fields that mean nothing to explaind (where a
container runs, schemata, encryption...) are accepted and ignored on purpose:
`IGNORED` lists them, and docs/migrating-from-vertex.md repeats the list.

The CLI, the SDK and the daemon's REST port all read payloads here: an
UploadModel body or a Model, an UpdateExplanationDataset body or its Examples,
an Explain body or its instances.
"""
from __future__ import annotations

import re

from google.protobuf import descriptor as _descriptor
from google.protobuf import json_format
from google.protobuf.message import Message

from explaind.client.values import to_value
from explaind.v1 import model_service_pb2, prediction_service_pb2

# Message full name -> Vertex fields (proto names) accepted and ignored on purpose.
IGNORED: dict[str, frozenset[str]] = {
    "explaind.v1.UploadModelRequest": frozenset({"service_account"}),
    "explaind.v1.Model": frozenset({
        "version_aliases", "version_description", "predict_schemata", "metadata_schema_uri", "metadata",
        "encryption_spec", "supported_export_formats"}),
    # explaind runs the SavedModel itself: no container, ports, routes or probes.
    "explaind.v1.ModelContainerSpec": frozenset({
        "env", "ports", "predict_route", "health_route", "invoke_route_prefix", "grpc_ports",
        "deployment_timeout", "shared_memory_size_mb", "startup_probe", "health_probe", "liveness_probe"}),
}

# Vertex fields that would change what is asked for: refused with the reason.
REFUSED: dict[str, dict[str, str]] = {
    "explaind.v1.UploadModelRequest": {
        "parent_model": "model versions are not supported: upload under a new model id",
    },
    "explaind.vertex.v1.BatchPredictionJob": {
        "encryption_spec": "customer-managed encryption keys are not supported: the output is written with "
                           "the destination's own encryption",
    },
    "explaind.vertex.v1.BatchPredictionJob.InputConfig": {
        "bigquery_source": "explaind reads files (gcsSource: any URI the uploads take), not BigQuery",
    },
    "explaind.vertex.v1.BatchPredictionJob.OutputConfig": {
        "bigquery_destination": "explaind writes files (gcsDestination), not BigQuery",
    },
}


class PayloadError(ValueError):
    """A payload explaind cannot take; `field` is its path, e.g. "model.explanationSpec.foo"."""

    def __init__(self, message: str, field: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _is_well_known(message: _descriptor.Descriptor) -> bool:
    """Value, Struct, Timestamp, Any...: json_format reads their JSON forms itself."""
    return message.full_name.startswith("google.protobuf.")


def normalize(data, descriptor: _descriptor.Descriptor, path: str = ""):
    """A copy of `data` (the JSON form of a `descriptor` message) that json_format
    parses: enum names upper-cased to their declared spelling, ignored fields
    dropped. Unknown or refused fields raise PayloadError naming them."""
    if not isinstance(data, dict):
        raise PayloadError(f"expected a JSON object for {descriptor.name}, got {type(data).__name__}", path)
    out = {}
    for key, item in data.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        where = f"{path}.{key}" if path else key
        if field is None:
            name = _snake(key)
            if name in IGNORED.get(descriptor.full_name, ()):
                continue
            refused = REFUSED.get(descriptor.full_name, {}).get(name)
            if refused:
                raise PayloadError(refused, where)
            raise PayloadError(f"unknown field: explaind's {descriptor.name} has no field {key!r}", where)
        out[key] = _normalize_field(field, item, where)
    return out


def _normalize_field(field: _descriptor.FieldDescriptor, item, path: str):
    if item is None:
        return None
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        if not isinstance(item, dict):
            raise PayloadError(f"expected a JSON object, got {type(item).__name__}", path)
        value_field = message.fields_by_name["value"]
        return {k: _normalize_single(value_field, v, f"{path}.{k}") for k, v in item.items()}
    if field.is_repeated:
        if not isinstance(item, list):
            raise PayloadError(f"expected a JSON list, got {type(item).__name__}", path)
        return [_normalize_single(field, v, f"{path}[{i}]") for i, v in enumerate(item)]
    return _normalize_single(field, item, path)


def _normalize_single(field: _descriptor.FieldDescriptor, item, path: str):
    if field.message_type is not None:
        if _is_well_known(field.message_type) or item is None:
            return item
        return normalize(item, field.message_type, path)
    if field.enum_type is not None and isinstance(item, str):
        names = {v.name.upper(): v.name for v in field.enum_type.values}
        try:
            return names[item.upper()]
        except KeyError:
            raise PayloadError(f"{item!r} is not one of {', '.join(sorted(names.values()))}", path) from None
    return item


def parse(data, message: Message, path: str = "") -> Message:
    """Fills `message` from its JSON form `data` (see normalize) and returns it."""
    cleaned = normalize(data, message.DESCRIPTOR, path)
    try:
        json_format.ParseDict(cleaned, message)
    except json_format.ParseError as e:
        # json_format says "Failed to parse model field: Failed to parse displayName field: ...".
        inner = re.findall(r"Failed to parse (\w+) field", str(e))
        raise PayloadError(str(e), ".".join(([path] if path else []) + inner)) from None
    except RecursionError:
        raise PayloadError("nested too deeply", path) from None
    return message


def is_upload_body(payload) -> bool:
    """A whole UploadModel request body ({"model": {...}, ...}) rather than a bare Model."""
    return isinstance(payload, dict) and isinstance(payload.get("model"), dict)


def upload_request(payload, model_id: str = "") -> model_service_pb2.UploadModelRequest:
    """A whole UploadModel request body or a bare Model -> UploadModelRequest;
    a non-empty `model_id` (a command-line flag) replaces the body's."""
    request = model_service_pb2.UploadModelRequest()
    if is_upload_body(payload):
        parse(payload, request)
    else:
        parse(payload, request.model, "model")
    if model_id:
        request.model_id = model_id
    return request


def update_request(payload, name: str = "") -> model_service_pb2.UpdateExplanationDatasetRequest:
    """A whole UpdateExplanationDataset request body ({"examples": {...}, ...}, Vertex
    AI's, with explaind's removeExampleIds and retrain) or its bare Examples ({"gcsSource":
    ...} or {"exampleGcsSource": ...}) -> UpdateExplanationDatasetRequest; a non-empty
    `name` replaces the body's model."""
    request = model_service_pb2.UpdateExplanationDatasetRequest()
    fields = request.DESCRIPTOR
    if isinstance(payload, dict) and any(fields.fields_by_camelcase_name.get(k) or fields.fields_by_name.get(k)
                                         for k in payload):
        parse(payload, request)
    else:
        parse(payload, request.examples, "examples")
    if name:
        request.model = name
    return request


def parse_with_instances(body: dict, message: Message, path: str = "") -> Message:
    """A request body with "instances" (explain or predict, explaind's or Vertex's):
    instances go through the fast Value codec, the rest through `parse`."""
    if not isinstance(body, dict):
        raise PayloadError(f"expected a JSON object, got {type(body).__name__}", path)
    rest = {k: v for k, v in body.items() if k != "instances"}
    parse(rest, message, path)
    instances = body.get("instances")
    if instances is None:
        return message
    if not isinstance(instances, list):
        raise PayloadError(f"expected a JSON list, got {type(instances).__name__}",
                           f"{path}.instances" if path else "instances")
    for i, instance in enumerate(instances):
        try:
            message.instances.append(to_value(instance))
        except (TypeError, ValueError) as e:
            raise PayloadError(str(e), f"instances[{i}]") from None
        except RecursionError:
            raise PayloadError("nested too deeply", f"instances[{i}]") from None
    return message


def explain_request(payload, name: str = "") -> prediction_service_pb2.ExplainRequest:
    """Instances as a list, or a whole Explain request body ({"instances": [...],
    "explanation_spec_override": {...}, ...}) -> ExplainRequest for model `name`."""
    request = prediction_service_pb2.ExplainRequest()
    if isinstance(payload, dict):
        parse_with_instances(payload, request)
    elif isinstance(payload, (str, bytes)) or not hasattr(payload, "__iter__"):
        raise PayloadError(f"expected a list of instances or a request body, got {type(payload).__name__}",
                           "instances")
    else:       # a list, tuple or numpy array of instances
        parse_with_instances({"instances": list(payload)}, request)
    if name:
        request.name = name
    return request
