"""Page tokens for the List methods: the name of the last item returned, opaque
to callers. Names sort stably, so a page resumes after that name even when
items were added or removed in between."""
from __future__ import annotations

import base64

from ..errors import InvalidArgument


def encode(last_name: str) -> str:
    return base64.urlsafe_b64encode(last_name.encode()).decode()


# A token holds one resource name (at most a few hundred bytes); anything far
# longer was not issued here.
MAX_TOKEN_CHARS = 2048


def decode(token: str) -> str:
    """'' for the first page; INVALID_ARGUMENT for a token this server did not issue.
    Strict: base64's lenient decoder drops characters outside its alphabet, which
    would turn garbage ('%%') into an empty name, the first page, again and again."""
    if not token:
        return ""
    try:
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError("too long")
        name = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode()
        if not name or encode(name) != token:
            raise ValueError("not canonical")
        return name
    except (ValueError, UnicodeError):
        raise InvalidArgument("not a token this server issued", field="page_token") from None
