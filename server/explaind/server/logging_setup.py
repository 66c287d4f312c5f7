"""Structured logging: one JSON object per line on stderr.

Every line has time, level, logger and message, plus any `extra` fields the
caller passed (request_id, model, operation, ...) and, inside a gRPC call, the
call's request_id (set by the request-id interceptor through `request_id_var`).
"""
from __future__ import annotations

import contextvars
import datetime
import json
import logging
import sys

# The current call's request id; the request-id interceptor sets it per call.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("explaind_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def _extra_fields(record: logging.LogRecord) -> dict:
    fields = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}
    if "request_id" not in fields:
        request_id = request_id_var.get()
        if request_id:
            fields["request_id"] = request_id
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    t = datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For people at a terminal: `time level logger: message key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = " ".join(f"{k}={v}" for k, v in _extra_fields(record).items())
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _ExplaindHandler(logging.StreamHandler):
    """Marks the handler this module installed, so a second call replaces it."""


def configure_logging(level: str = "INFO", json_format: bool = True, stream=None) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr) in one format.

    Idempotent: calling again replaces the handler this function installed
    (other handlers, e.g. pytest's, are left alone). Returns the handler.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ExplaindHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _ExplaindHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
