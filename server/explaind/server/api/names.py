"""Resource names in requests."""
from __future__ import annotations

from ..errors import InvalidArgument


def model_id(name: str, field: str = "name") -> str:
    """'models/{id}' -> id (a bare id is accepted too)."""
    prefix, _, rest = name.rpartition("models/")
    candidate = rest if name.startswith("models/") or "/models/" in name else name
    if not candidate or "/" in candidate or candidate in (".", ".."):   # store keys are built from it
        raise InvalidArgument(f"expected 'models/{{id}}', got {name[:200]!r}", field=field)
    return candidate
