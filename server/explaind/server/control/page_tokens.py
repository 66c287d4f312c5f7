"""Page tokens for the List methods: the name of the last item returned, opaque
to callers. Names sort stably, so a page resumes after that name even when
items were added or removed in between."""
from __future__ import annotations

import base64

from ..errors import InvalidArgument


def encode(last_name: str) -> str:
    return base64.urlsafe_b64encode(last_name.encode()).decode()


def decode(token: str) -> str:
    """'' for the first page; INVALID_ARGUMENT for a token this server did not issue."""
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("not a token this server issued", field="page_token") from None
