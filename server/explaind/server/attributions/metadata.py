"""Explanation metadata: the Explainable AI SDK's `explanation_metadata.json` <-> the ExplanationMetadata proto.

The SDK's file spells some fields differently from Vertex's proto (`domain` vs
`feature_value_domain`, `clip_above_percentile` vs `clip_percent_upperbound`,
lower-case enum values, `index_name_mapping`); both spellings are accepted, as
are the camelCase names of Vertex's REST JSON. Keys the proto has no room for
(`framework`, `tags`, dtypes, gradient tensor names...) are read and dropped.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable, Mapping

from google.protobuf import json_format, struct_pb2

from explaind.v1 import explanation_pb2

from ..errors import InvalidArgument, enum_name
from ..security import uris as allowed_uris

METADATA_FILE = "explanation_metadata.json"
MAX_BASELINES = 10
DEFAULT_FIELD = "model.explanation_spec.metadata"

InputMetadata = explanation_pb2.ExplanationMetadata.InputMetadata
Visualization = InputMetadata.Visualization

_INPUT_ALIASES = {"domain": "feature_value_domain"}
_DOMAIN_ALIASES = {"min": "min_value", "max": "max_value"}
_VISUALIZATION_ALIASES = {
    "clip_above_percentile": "clip_percent_upperbound",
    "clip_below_percentile": "clip_percent_lowerbound",
}
# The SDK's overlay values -> the proto's enum names.
_OVERLAY_ALIASES = {"none": "NONE", "original": "ORIGINAL", "grayscale": "GRAYSCALE", "mask": "MASK_BLACK"}
_OUTPUT_ALIASES = {"index_name_mapping": "index_display_name_mapping", "index_name_mapping_key": "display_name_mapping_key"}
BAG_ENCODINGS = ("BAG_OF_FEATURES", "BAG_OF_FEATURES_SPARSE", "INDICATOR")
EMBEDDING_ENCODINGS = ("COMBINED_EMBEDDING", "CONCAT_EMBEDDING")
MAX_FEATURE_NAMES = 100_000
MAX_NAME_LENGTH = 1024
PARAMETERS_FIELD = "model.explanation_spec.parameters"


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _normalized(mapping: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for key, value in mapping.items():
        key = _snake(key)
        out[aliases.get(key, key)] = value
    return out


def _enum_value(enum_type, value, field: str) -> int:
    if isinstance(value, int):
        return value
    name = str(value).upper()
    try:
        return enum_type.Value(name)
    except ValueError:
        raise InvalidArgument(f"unknown value {value!r}; expected one of {list(enum_type.keys())[1:]}", field=field) from None


def _value(python_value) -> struct_pb2.Value:
    value = struct_pb2.Value()
    json_format.ParseDict(python_value, value)
    return value


def parse_metadata(document: Mapping[str, Any], field: str = DEFAULT_FIELD) -> explanation_pb2.ExplanationMetadata:
    """An SDK-format (or Vertex JSON) metadata dict -> ExplanationMetadata."""
    if not isinstance(document, Mapping):
        raise InvalidArgument("metadata must be a JSON object", field=field)
    document = _normalized(document, {})
    metadata = explanation_pb2.ExplanationMetadata()
    for name, entry in (document.get("inputs") or {}).items():
        metadata.inputs[name].CopyFrom(_parse_input(entry, f"{field}.inputs[{name}]"))
    for name, entry in (document.get("outputs") or {}).items():
        metadata.outputs[name].CopyFrom(_parse_output(entry, f"{field}.outputs[{name}]"))
    for key in ("feature_attributions_schema_uri", "latent_space_source"):
        if document.get(key):
            setattr(metadata, key, str(document[key]))
    return metadata


def _parse_input(entry: Mapping[str, Any], field: str) -> InputMetadata:
    entry = _normalized(entry, _INPUT_ALIASES)
    message = InputMetadata()
    for key in ("input_tensor_name", "modality", "indices_tensor_name", "dense_shape_tensor_name",
                "encoded_tensor_name", "group_name"):
        if entry.get(key) is not None:
            setattr(message, key, str(entry[key]))
    if entry.get("encoding"):
        message.encoding = _enum_value(InputMetadata.Encoding, entry["encoding"], f"{field}.encoding")
    for key in ("input_baselines", "encoded_baselines"):
        values = entry.get(key)
        if values is not None:
            if not isinstance(values, list):
                raise InvalidArgument("baselines must be a list", field=f"{field}.{key}")
            getattr(message, key).extend(_value(v) for v in values)
    if entry.get("index_feature_mapping"):
        message.index_feature_mapping.extend(str(v) for v in entry["index_feature_mapping"])
    if entry.get("feature_value_domain"):
        domain = _normalized(entry["feature_value_domain"], _DOMAIN_ALIASES)
        for key in ("min_value", "max_value", "original_mean", "original_stddev"):
            if domain.get(key) is not None:
                setattr(message.feature_value_domain, key, float(domain[key]))
    if entry.get("visualization"):
        message.visualization.CopyFrom(_parse_visualization(entry["visualization"], f"{field}.visualization"))
    return message


def _parse_visualization(entry: Mapping[str, Any], field: str) -> Visualization:
    entry = _normalized(entry, _VISUALIZATION_ALIASES)
    message = Visualization()
    if entry.get("type"):
        message.type = _enum_value(Visualization.Type, entry["type"], f"{field}.type")
    if entry.get("polarity"):
        message.polarity = _enum_value(Visualization.Polarity, entry["polarity"], f"{field}.polarity")
    if entry.get("color_map"):
        message.color_map = _enum_value(Visualization.ColorMap, entry["color_map"], f"{field}.color_map")
    overlay = entry.get("overlay_type")
    if overlay:
        overlay = _OVERLAY_ALIASES.get(str(overlay).lower(), overlay) if isinstance(overlay, str) else overlay
        message.overlay_type = _enum_value(Visualization.OverlayType, overlay, f"{field}.overlay_type")
    for key in ("clip_percent_upperbound", "clip_percent_lowerbound"):
        if entry.get(key) is not None:
            value = float(entry[key])
            if not 0 <= value <= 100:
                raise InvalidArgument("a clip percentile must be in [0, 100]", field=f"{field}.{key}")
            setattr(message, key, value)
    return message


def _parse_output(entry: Mapping[str, Any], field: str) -> explanation_pb2.ExplanationMetadata.OutputMetadata:
    entry = _normalized(entry, _OUTPUT_ALIASES)
    message = explanation_pb2.ExplanationMetadata.OutputMetadata()
    if entry.get("output_tensor_name"):
        message.output_tensor_name = str(entry["output_tensor_name"])
    if entry.get("index_display_name_mapping") is not None:
        message.index_display_name_mapping.CopyFrom(_value(entry["index_display_name_mapping"]))
    elif entry.get("display_name_mapping_key"):
        message.display_name_mapping_key = str(entry["display_name_mapping_key"])
    return message


def load_metadata_for_model(artifact_uri: str) -> explanation_pb2.ExplanationMetadata | None:
    """Reads explanation_metadata.json from a SavedModel folder (path or fsspec URL); None when absent."""
    if not artifact_uri:
        return None
    import fsspec  # the server's storage layer; imported here so parsing needs only protobuf

    field = "model.artifact_uri"
    path = allowed_uris.check(artifact_uri.rstrip("/") + "/" + METADATA_FILE, field)   # a symlink out is refused
    filesystem, location = fsspec.core.url_to_fs(path)
    if not filesystem.exists(location):
        return None
    try:
        with filesystem.open(location, "r") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as error:
        raise InvalidArgument(f"cannot read {METADATA_FILE}: {error}", field=field) from None
    return parse_metadata(document, field=f"{field} ({METADATA_FILE})")


def signature_name_of(input_tensor_name: str, names: Iterable[str]) -> str | None:
    """The signature key a metadata tensor name refers to ('x' or a TF1-style 'x:0')."""
    names = set(names)
    if input_tensor_name in names:
        return input_tensor_name
    stripped = input_tensor_name.split(":")[0]
    return stripped if stripped in names else None


def validate_metadata(
    metadata: explanation_pb2.ExplanationMetadata,
    input_names: Iterable[str],
    output_names: Iterable[str],
    field: str = DEFAULT_FIELD,
    method: str | None = None,
    resolve: Callable[[str], str] | None = None,
) -> None:
    """Raises InvalidArgument (naming the field) when metadata does not fit the model.

    The model-free rules of check_metadata first; then every input tensor must be a
    signature input, or a graph tensor `resolve` finds (it raises LookupError saying why
    not), and the output an output of the signature. `method` ("xrai", ...) enables the
    method-specific checks.
    """
    check_metadata(metadata, field, method)
    input_names, output_names = list(input_names), list(output_names)
    for name, entry in metadata.inputs.items():
        prefix = f"{field}.inputs[{name}]"
        for key in ("input_tensor_name", "encoded_tensor_name", "indices_tensor_name", "dense_shape_tensor_name"):
            tensor = getattr(entry, key) or (name if key == "input_tensor_name" else "")
            if not tensor or signature_name_of(tensor, input_names) is not None:
                continue
            if resolve is None:
                raise InvalidArgument(f"input tensor {tensor!r} is not an input of the signature {sorted(input_names)}",
                                      field=f"{prefix}.{key}")
            try:
                resolve(tensor)
            except LookupError as error:
                raise InvalidArgument(str(error).strip("'\""), field=f"{prefix}.{key}") from None
    for name, entry in metadata.outputs.items():
        tensor = entry.output_tensor_name or name
        if signature_name_of(tensor, output_names) is None:
            raise InvalidArgument(f"output tensor {tensor!r} is not an output of the signature {sorted(output_names)}",
                                  field=f"{field}.outputs[{name}].output_tensor_name")


def check_metadata(metadata: explanation_pb2.ExplanationMetadata, field: str = DEFAULT_FIELD,
                   method: str | None = None, parameters=None) -> None:
    """The rules that need no model, so an upload is refused at once (INVALID_ARGUMENT
    naming the field) rather than when its model loads. `parameters` (the spec's
    ExplanationParameters) adds the check of SmoothGrad's feature names."""
    counts = {}
    keys: dict[str, str] = {}       # attribution key -> the field that claims it
    groups = {entry.group_name for entry in metadata.inputs.values() if entry.group_name}
    for name, entry in sorted(metadata.inputs.items()):     # sorted: the same error whatever the map's order
        prefix = f"{field}.inputs[{name}]"
        encoding = enum_name(InputMetadata.Encoding, entry.encoding, f"{prefix}.encoding")
        if entry.HasField("visualization"):     # read again at every explanation: refused now, not then
            for key, enum in (("type", Visualization.Type), ("polarity", Visualization.Polarity),
                              ("color_map", Visualization.ColorMap), ("overlay_type", Visualization.OverlayType)):
                enum_name(enum, getattr(entry.visualization, key), f"{prefix}.visualization.{key}")
        for key in ("input_baselines", "encoded_baselines"):
            count = len(getattr(entry, key))
            if count > MAX_BASELINES:
                raise InvalidArgument(f"at most {MAX_BASELINES} baselines per input, got {count}", field=f"{prefix}.{key}")
            if count:
                counts[name] = (count, f"{prefix}.{key}")
        _check_encoding(entry, encoding, prefix)
        if entry.group_name:
            claims = {entry.group_name: f"{prefix}.group_name"}
        elif encoding in BAG_ENCODINGS:
            claims = {feature: f"{prefix}.index_feature_mapping" for feature in entry.index_feature_mapping}
        else:
            claims = {name: f"{prefix}"}
        for key, claimed_by in claims.items():
            if key in keys and not (entry.group_name and key == entry.group_name and keys[key].endswith(".group_name")):
                raise InvalidArgument(f"the attribution key {key!r} is claimed twice (also by {keys[key]})", field=claimed_by)
            if key in groups and not entry.group_name:
                raise InvalidArgument(f"{key!r} is also the name of a group", field=claimed_by)
            keys[key] = claimed_by
    if len({count for count, _ in counts.values()}) > 1:
        raise InvalidArgument(f"every input needs the same number of baselines, got "
                              f"{ {name: count for name, (count, _) in counts.items()} }",
                              field=counts[sorted(counts)[-1]][1])
    if len(metadata.outputs) > 1:
        raise InvalidArgument("explanation metadata names exactly one output", field=f"{field}.outputs")
    if method == "xrai" and len(metadata.inputs) and not any(entry.modality.lower() == "image" for entry in metadata.inputs.values()):
        raise InvalidArgument("XRAI needs an input with modality 'image'", field=f"{field}.inputs")
    if parameters is not None and len(metadata.inputs):
        check_noise_names(parameters, set(metadata.inputs), PARAMETERS_FIELD)


def _check_encoding(entry: InputMetadata, encoding: str, prefix: str) -> None:
    mapping = list(entry.index_feature_mapping)
    if encoding in BAG_ENCODINGS and not mapping:
        raise InvalidArgument(f"encoding {encoding} needs index_feature_mapping", field=f"{prefix}.index_feature_mapping")
    if len(mapping) > MAX_FEATURE_NAMES:
        raise InvalidArgument(f"at most {MAX_FEATURE_NAMES} names, got {len(mapping)}",
                              field=f"{prefix}.index_feature_mapping")
    seen = set()
    for position, feature in enumerate(mapping):
        if not feature or len(feature) > MAX_NAME_LENGTH or feature in seen:
            problem = "is empty" if not feature else "is too long" if len(feature) > MAX_NAME_LENGTH else "repeats a name"
            raise InvalidArgument(f"the name {feature[:64]!r} {problem}", field=f"{prefix}.index_feature_mapping[{position}]")
        seen.add(feature)
    if encoding in EMBEDDING_ENCODINGS and not entry.encoded_tensor_name:
        raise InvalidArgument(f"encoding {encoding} needs the embedding tensor's name",
                              field=f"{prefix}.encoded_tensor_name")
    if len(entry.encoded_baselines) and not entry.encoded_tensor_name:
        raise InvalidArgument("encoded baselines need encoded_tensor_name", field=f"{prefix}.encoded_baselines")
    if len(entry.encoded_baselines) and len(entry.input_baselines):
        raise InvalidArgument("give input_baselines or encoded_baselines, not both", field=f"{prefix}.encoded_baselines")
    if entry.dense_shape_tensor_name and not entry.indices_tensor_name:
        raise InvalidArgument("a sparse input's dense shape needs its indices tensor",
                              field=f"{prefix}.indices_tensor_name")
    for key in ("input_tensor_name", "encoded_tensor_name", "indices_tensor_name", "dense_shape_tensor_name",
                "group_name", "modality"):
        if len(getattr(entry, key)) > MAX_NAME_LENGTH:
            raise InvalidArgument(f"at most {MAX_NAME_LENGTH} characters", field=f"{prefix}.{key}")


def check_noise_names(parameters, feature_names: set[str], field: str) -> None:
    """SmoothGrad's feature_noise_sigma names must be explained features (Vertex adds no noise
    to the others, so a misspelt name would silently mean no noise)."""
    method = parameters.WhichOneof("method")
    if method not in ("integrated_gradients_attribution", "xrai_attribution"):
        return
    config = getattr(parameters, method).smooth_grad_config
    for position, entry in enumerate(config.feature_noise_sigma.noise_sigma):
        if entry.name not in feature_names:
            raise InvalidArgument(f"{entry.name[:MAX_NAME_LENGTH]!r} is not an explained input "
                                  f"({sorted(feature_names)[:20]})",
                                  field=f"{field}.{method}.smooth_grad_config.feature_noise_sigma.noise_sigma[{position}].name")
