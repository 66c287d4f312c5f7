"""Resource names in requests."""
from __future__ import annotations

from ..errors import InvalidArgument
from ..model_ids import is_stored_model_id


def model_id(name: str, field: str = "name") -> str:
    """'models/{id}' -> id (a bare id is accepted too)."""
    prefix, _, rest = name.rpartition("models/")
    candidate = rest if name.startswith("models/") or "/models/" in name else name
    if not is_stored_model_id(candidate):
        raise InvalidArgument(f"expected 'models/{{id}}' with an id of [A-Za-z0-9_.-], got {name[:200]!r}",
                              field=field)
    return candidate
