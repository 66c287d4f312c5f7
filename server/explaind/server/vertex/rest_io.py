"""What every Vertex REST route reads and writes: a bounded JSON body, query
parameters, and JSON answers. One reader of bodies and one of list queries, so
each route bounds and names its inputs the same way."""
from __future__ import annotations

import json

from aiohttp import web
from google.protobuf import json_format

from ..errors import InvalidArgument

MAX_QUERY_CHARS = 2000


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


async def json_body(request: web.Request) -> dict:
    """The body as a JSON object; anything else is INVALID_ARGUMENT (the size is aiohttp's to bound)."""
    raw = await request.read()
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise InvalidArgument("the body is not UTF-8", field="body") from None
    except RecursionError:
        raise InvalidArgument("the body is nested too deeply", field="body") from None
    except ValueError as e:
        raise InvalidArgument(f"the body is not JSON: {e}", field="body") from None
    if not isinstance(body, dict):
        raise InvalidArgument(f"the body must be a JSON object, got {type(body).__name__}", field="body")
    return body


async def optional_json_body(request: web.Request) -> dict:
    """The body as json_body reads it, or {} for a request without one."""
    if not request.can_read_body:
        return {}
    return await json_body(request)


def query(request: web.Request, camel: str, snake: str | None = None) -> str:
    """A query parameter by either spelling, bounded; the error names the snake_case field."""
    value = request.query.get(camel, request.query.get(snake or camel, ""))
    if len(value) > MAX_QUERY_CHARS:
        raise InvalidArgument(f"at most {MAX_QUERY_CHARS} characters", field=snake or camel)
    return value


def list_query(request: web.Request, message) -> None:
    """Fills a List*Request's filter, page token, page size and (where it has one) order_by."""
    message.filter = query(request, "filter")
    message.page_token = query(request, "pageToken", "page_token")
    if "order_by" in message.DESCRIPTOR.fields_by_name:
        message.order_by = query(request, "orderBy", "order_by")
    size = query(request, "pageSize", "page_size")
    if size:
        if not size.lstrip("-").isdigit() or len(size) > 10:
            raise InvalidArgument(f"expected an integer, got {size[:50]!r}", field="page_size")
        message.page_size = max(-1, min(int(size), 2 ** 31 - 1))


def json_answer(data: dict, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


def message_answer(message) -> web.Response:
    """A protobuf message as Vertex's REST JSON (camelCase field names)."""
    return json_answer(json_format.MessageToDict(message))
