"""The rules a model id follows, in one place (the store, the build side and every API import them).

Two rules, because ids outlive the versions that accepted them:
- a NEW id, the one UploadModel gives a model (and an endpoint id that names its model):
  Vertex AI's rule, 1 to 63 of [a-z0-9_-], not starting with a digit or a hyphen;
- a STORED id, any id a request may name and a store key may be built from: wider, so
  models earlier versions accepted stay reachable, yet never a path trick ('/', '.', '..').
Both are checked whole (fullmatch): `re.match` with `$` would let a trailing newline through.
"""
from __future__ import annotations

import re

from .errors import InvalidArgument

_NEW = re.compile(r"[a-z_][a-z0-9_-]{0,62}")
_STORED = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9_.-]{1,128}")


def is_new_model_id(value: object) -> bool:
    """What UploadModel accepts as a new model's id."""
    return isinstance(value, str) and _NEW.fullmatch(value) is not None


def is_stored_model_id(value: object) -> bool:
    """What may name a model in the store (and so in any request)."""
    return isinstance(value, str) and _STORED.fullmatch(value) is not None


def check_new_model_id(value: str, field: str = "model_id") -> str:
    if not is_new_model_id(value):
        raise InvalidArgument(f"{value[:200]!r} is not a valid model id: at most 63 of [a-z0-9_-], "
                              "not starting with a digit or hyphen", field=field)
    return value

