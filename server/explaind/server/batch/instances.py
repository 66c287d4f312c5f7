"""Rows into the instances the model gets, by the job's instance_config
(Vertex AI's BatchPredictionJob.InstanceConfig):

    instance_type    "object": each JSONL line must be an object; a CSV row becomes an object keyed
                     by its header (explaind's addition: explaind's models take objects keyed by input).
                     "array": a JSONL object becomes the array of its included_fields, in their
                     order; a CSV row is an array already (the default)
    key_field        that field (a JSONL object's key, a CSV column) is not sent to the model; the
                     output line carries it as "key" in place of the instance
    included_fields  only these fields are sent (and, for "array", in this order)
    excluded_fields  these are not sent (the output's instance still shows them)

tf-record and file-list rows are {"b64": ...} values: no instance_config applies.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import grpc

from explaind.v1 import batch_service_pb2

from ..errors import InvalidArgument
from .rows import CSV, JSONL, CsvRow, Row, RowError

TYPES = ("", "object", "array")
MAX_FIELDS = 10_000
MAX_FIELD_CHARS = 256


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What the model gets for one row, and what the output line names the row by:
    ("instance", the row as read) or ("key", its key field's value)."""
    instance: Any
    shown_as: str
    shown: Any


@dataclasses.dataclass(frozen=True)
class InstanceShape:
    instance_type: str = ""
    key_field: str = ""
    included: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    @classmethod
    def validated(cls, config: batch_service_pb2.InstanceConfig, instances_format: str,
                  field: str) -> "InstanceShape":
        shape = cls(config.instance_type, config.key_field, tuple(config.included_fields),
                    tuple(config.excluded_fields))
        if shape == cls():
            return shape
        if instances_format not in (JSONL, CSV):
            raise InvalidArgument(f"applies to jsonl and csv input only, not {instances_format} (whose rows are "
                                  '{"b64": ...} values)', field=field)
        if shape.instance_type not in TYPES:
            raise InvalidArgument(f"instance_type must be object or array, got {shape.instance_type[:100]!r}",
                                  field=f"{field}.instance_type")
        if shape.included and shape.excluded:
            raise InvalidArgument("set included_fields or excluded_fields, not both", field=field)
        for name, values in (("included_fields", shape.included), ("excluded_fields", shape.excluded),
                             ("key_field", (shape.key_field,) if shape.key_field else ())):
            if len(values) > MAX_FIELDS:
                raise InvalidArgument(f"at most {MAX_FIELDS} fields, got {len(values)}", field=f"{field}.{name}")
            for value in values:
                if not value or len(value) > MAX_FIELD_CHARS:
                    raise InvalidArgument(f"field names are 1 to {MAX_FIELD_CHARS} characters",
                                          field=f"{field}.{name}")
        if shape.key_field in shape.included:
            raise InvalidArgument(f"{shape.key_field!r} is the key field: it cannot be sent too",
                                  field=f"{field}.included_fields")
        return shape

    def prepare(self, row: Row) -> Prepared | RowError:
        """The instance of a readable row, or why it cannot make one."""
        value = row.value
        if self == InstanceShape():
            return Prepared(list(value) if isinstance(value, CsvRow) else value, "instance", _plain(value))
        if isinstance(value, CsvRow):
            value = dict(zip(value.header, value))
            as_array = self.instance_type != "object"
        elif isinstance(value, dict):
            as_array = self.instance_type == "array"
        elif self.instance_type == "object" or self.key_field or self.included or self.excluded:
            return _error(row, f"is a JSON {type(value).__name__}, instance_config needs an object")
        else:
            return Prepared(value, "instance", value)
        fields = dict(value)
        shown_as, shown = "instance", _plain(row.value)
        if self.key_field:
            if self.key_field not in fields:
                return _error(row, f"has no key field {self.key_field!r}")
            shown_as, shown = "key", fields.pop(self.key_field)
        if self.included:
            missing = [name for name in self.included if name not in fields]
            if missing:
                return _error(row, f"has no field {missing[0]!r} (included_fields)")
            fields = {name: fields[name] for name in self.included}
        for name in self.excluded:
            fields.pop(name, None)
        if as_array:
            if isinstance(row.value, dict) and not self.included:
                return _error(row, 'is an object: instance_type "array" needs included_fields to order its values')
            return Prepared(list(fields.values()), shown_as, shown)
        return Prepared(fields, shown_as, shown)


def _plain(value):
    return list(value) if isinstance(value, CsvRow) else value


def _error(row: Row, message: str) -> RowError:
    return RowError(grpc.StatusCode.INVALID_ARGUMENT, f"{row.where}: the row {message}")
