"""Domain errors that carry a gRPC status code and, where known, the offending field.

Code below the API layer raises these; the servicers (api/) turn them into a
gRPC status whose details carry a google.rpc.BadRequest naming the field.
"""
from __future__ import annotations

import contextlib

import grpc


class ExplaindError(Exception):
    """An error a caller can act on. `field` is a request path such as
    "model.explanation_spec.parameters.examples.neighbor_count"."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidArgument(ExplaindError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ExplaindError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ExplaindError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ExplaindError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ExplaindError):
    """A concurrent change got there first: retry."""
    code = grpc.StatusCode.ABORTED


class PermissionDenied(ExplaindError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ExplaindError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ExplaindError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ExplaindError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class DimensionMismatch(InvalidArgument):
    """Vectors whose size is not the index's (or the configured) dimensions."""


def enum_name(enum_type, value: int, field: str) -> str:
    """The name of an enum value from a request. proto3 enums are open: an unknown
    number parses fine and must be refused here, naming the field."""
    try:
        return enum_type.Name(value)
    except ValueError:
        raise InvalidArgument(f"unknown value {value}; expected one of {list(enum_type.keys())}", field=field) \
            from None


@contextlib.contextmanager
def attach_fields(default: str | None, by_type: dict[type, str] | None = None):
    """Lower layers (the index, the readers) know nothing of request paths; a caller
    names the field for the errors they raise without one: the field of the first
    matching type in `by_type`, else `default`."""
    try:
        yield
    except ExplaindError as e:
        if e.field is None:
            e.field = next((field for kind, field in (by_type or {}).items() if isinstance(e, kind)), default)
        raise
