"""json_format.MessageToDict for the messages of a batch job's lines (Vertex's
Explanation: attributions and neighbors), without its per-element Python walk.

MessageToDict visits every number of an attribution's Value one call at a time;
explaind.client.values.to_python reads the same Value as it does (its own
tests check), a regular array in one numpy pass. The rest follows MessageToDict
field by field for the kinds these messages have (doubles, int32s, strings,
bools, messages and Values, repeated or not); any other kind, or a double that
JSON has no number for, is left to MessageToDict itself, so the dict is always
the one it would give."""
from __future__ import annotations

import math

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from explaind.client.values import to_python

_VALUE = "google.protobuf.Value"
_PLAIN = {FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_STRING, FieldDescriptor.CPPTYPE_BOOL}


class _Unusual(Exception):
    pass


def message_dict(message: Message) -> dict:
    """MessageToDict(message), with its defaults (camelCase names, no default values)."""
    try:
        return _message(message)
    except (_Unusual, ValueError):      # ValueError: a non-finite Value number, which MessageToDict words
        return json_format.MessageToDict(message)


def _message(message: Message) -> dict:
    out = {}
    for field, value in message.ListFields():
        if field.is_extension or field.type == FieldDescriptor.TYPE_BYTES:
            raise _Unusual
        if field.is_repeated:
            out[field.json_name] = [_field(field, item) for item in value]
        else:
            out[field.json_name] = _field(field, value)
    return out


def _field(field: FieldDescriptor, value):
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry:
            raise _Unusual
        if field.message_type.full_name == _VALUE:
            return to_python(value)
        if field.message_type.full_name.startswith("google.protobuf."):   # JSON of their own
            raise _Unusual
        return _message(value)
    if kind == FieldDescriptor.CPPTYPE_DOUBLE:
        if not math.isfinite(value):
            raise _Unusual
        return value
    if kind in _PLAIN:
        return value
    raise _Unusual
