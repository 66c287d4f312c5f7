"""Reads an explain or predict request into plain values, with every bound
checked and every error naming its field. Every API surface hands the data
plane the same parts (instances as google.protobuf.Value, the override as an
explaind.v1 ExplanationSpecOverride), so this is the only validation. A batch
job, which reads its rows from JSON, may hand DecodedInstances instead.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from google.protobuf import json_format, struct_pb2

from explaind.client.values import number_list, to_python, to_value
from explaind.v1 import explanation_pb2

from ..errors import InvalidArgument
from ..index.config import DEFAULT_NEIGHBOR_COUNT
from ..index.restricts import Namespace, parse_restricts
from ..runtime.instances import Instance, parse_instance

OVERRIDE = "explanation_spec_override.examples_override"
DataFormat = explanation_pb2.ExamplesOverride.DataFormat
EMBEDDINGS = DataFormat.Value("EMBEDDINGS")     # read once: the enum wrapper's attribute lookup costs per call


@dataclasses.dataclass(frozen=True)
class DecodedInstance:
    """An instance already as to_python(Value) gives it (dicts, lists, finite floats,
    strings, bools, None): read as it is, without a Value to build and walk back."""
    value: object


@dataclasses.dataclass(frozen=True)
class Limits:
    """The server's bounds on one request (from Settings)."""
    max_instances_per_request: int = 1024
    max_neighbor_count: int = 1000
    max_crowding_count: int = 1000
    max_restrict_tokens: int = 1000

    @classmethod
    def of(cls, settings) -> "Limits":
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class ExamplesQuery:
    neighbor_count: int
    crowding_count: int
    restricts: list[Namespace]
    return_embeddings: bool
    embeddings_format: bool


@dataclasses.dataclass
class ExplainCall:
    """One Explain call, read: its instances (and their labels in the response),
    the override as given, the server's limits and the call's deadline."""
    instances: list[Instance]
    override: explanation_pb2.ExplanationSpecOverride
    limits: Limits
    deadline: float | None

    @property
    def labels(self) -> list[str]:
        return [_input_label(inst, i) for i, inst in enumerate(self.instances)]


def wants_embeddings(override: explanation_pb2.ExplanationSpecOverride) -> bool:
    return override.HasField("examples_override") and \
        override.examples_override.data_format == EMBEDDINGS


def examples_query(override: explanation_pb2.ExplanationSpecOverride, model_neighbor_count: int,
                   limits: Limits) -> ExamplesQuery:
    examples = override.examples_override
    for name, limit in (("neighbor_count", limits.max_neighbor_count),
                        ("crowding_count", limits.max_crowding_count)):
        value = getattr(examples, name)
        if value < 0:
            raise InvalidArgument(f"must be >= 0, got {value}", field=f"{OVERRIDE}.{name}")
        if value > limit:
            raise InvalidArgument(f"must be <= {limit} (the server's --max-{name.replace('_', '-')}), got {value}",
                                  field=f"{OVERRIDE}.{name}")
    restricts = []
    if override.HasField("examples_override") and examples.restrictions:
        value = [json_format.MessageToDict(r, preserving_proto_field_name=True) for r in examples.restrictions]
        for raw in value:   # proto3 omits empty names; the parser must see them to reject them
            raw.setdefault("namespace_name", "")
        restricts = parse_restricts(value, field=f"{OVERRIDE}.restrictions", max_tokens=limits.max_restrict_tokens)
    return ExamplesQuery(
        neighbor_count=examples.neighbor_count or model_neighbor_count or DEFAULT_NEIGHBOR_COUNT,
        crowding_count=examples.crowding_count,
        restricts=restricts,
        return_embeddings=examples.return_embeddings,
        embeddings_format=examples.data_format == EMBEDDINGS,
    )


def instance_restricts(instances: list[Instance], query: ExamplesQuery, limits: Limits) -> list[list[Namespace]]:
    """Per instance: the override's restrictions ANDed with the instance's own."""
    return [query.restricts + parse_restricts(inst.restricts, field=f"instances[{i}].restricts",
                                              max_tokens=limits.max_restrict_tokens)
            for i, inst in enumerate(instances)]


def parse_instances(values, input_names: list[str] | None, embeddings: bool, limits: Limits) -> list[Instance]:
    if not values:
        raise InvalidArgument("at least one instance is required", field="instances")
    if len(values) > limits.max_instances_per_request:
        raise InvalidArgument(f"{len(values)} instances exceed the server's limit of "
                              f"{limits.max_instances_per_request} (--max-instances-per-request)",
                              field="instances")
    return [_instance(v, i, input_names, embeddings) for i, v in enumerate(values)]


def _instance(value: struct_pb2.Value | DecodedInstance, index: int, input_names, embeddings: bool) -> Instance:
    if isinstance(value, DecodedInstance):
        if not embeddings:
            return parse_instance(value.value, input_names, embeddings, field=f"instances[{index}]")
        value = to_value(value.value)       # the embeddings' own path below reads a Value's bytes
    if embeddings:
        # The hot path of EMBEDDINGS requests: a plain list of numbers, read from its wire
        # bytes in one numpy pass (the generic JSON conversion costs more than the search).
        numbers = number_list(value)
        if numbers is None and _is_number_list(value):      # numbers, with unknown fields beside them
            numbers = np.fromiter((x.number_value for x in value.list_value.values), dtype=np.float64,
                                  count=len(value.list_value.values))
        if numbers is not None:
            with np.errstate(over="ignore"):    # beyond float32 becomes inf, refused below
                return _embedding_instance(numbers.astype(np.float32), index)
    field = f"instances[{index}]"
    return parse_instance(_python(value, field), input_names, embeddings, field=field)


def _python(value: struct_pb2.Value, field: str):
    try:
        return to_python(value)
    except ValueError as e:
        raise InvalidArgument(str(e), field=field) from None


def _is_number_list(value: struct_pb2.Value) -> bool:
    return value.WhichOneof("kind") == "list_value" and all(
        x.WhichOneof("kind") == "number_value" for x in value.list_value.values)


def _embedding_instance(vector: np.ndarray, index: int) -> Instance:
    if not np.isfinite(vector).all():
        raise InvalidArgument("the embedding holds NaN or infinity (or a value beyond float32)",
                              field=f"instances[{index}]")
    return Instance(inputs=None, embedding=vector, id=None, restricts="", crowding_tag=None)


def _input_label(instance: Instance, index: int) -> str:
    return str(instance.id) if instance.id not in (None, "") else str(index)


def reject_parameters(value: struct_pb2.Value | None, field: str = "parameters") -> None:
    """Vertex's `parameters` feed a model's own prediction schema; explaind's models
    have none, so anything but an empty value is refused rather than ignored."""
    if value is None:
        return
    kind = value.WhichOneof("kind")
    if kind in (None, "null_value") or (kind == "struct_value" and not value.struct_value.fields):
        return
    raise InvalidArgument("explaind's models take no prediction parameters; per-request explanation "
                          "settings go in explanation_spec_override", field=field)
