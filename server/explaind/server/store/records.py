"""JSON encoding of protobuf records kept in the store (readable with any tool)."""
from __future__ import annotations

import json

from google.protobuf import json_format
from google.protobuf.message import Message


def message_to_dict(message: Message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=False)


def dict_to_message(data: dict, message: Message) -> Message:
    return json_format.ParseDict(data, message, ignore_unknown_fields=True)


def dumps(data: dict) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode()


def loads(data: bytes) -> dict:
    return json.loads(data.decode())
