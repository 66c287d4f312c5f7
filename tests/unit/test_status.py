"""translate_errors: domain errors keep their status and field; bugs answer INTERNAL naming the error."""
import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from explaind.server.api.status import DETAILS_KEY, translate_errors
from explaind.server.errors import InvalidArgument


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self):
        self.trailing = ()
        self.code = None
        self.details = None

    def set_trailing_metadata(self, metadata):
        self.trailing = metadata

    def trailing_metadata(self):
        return self.trailing

    async def abort(self, code, details):
        self.code, self.details = code, details
        raise Aborted()


class Servicer:
    def __init__(self, error):
        self.error = error

    @translate_errors
    async def Call(self, request, context):
        raise self.error


def _call(error) -> FakeContext:
    context = FakeContext()
    with pytest.raises(Aborted):
        asyncio.run(Servicer(error).Call(None, context))
    return context


def test_domain_error_keeps_code_and_field():
    context = _call(InvalidArgument("must be >= 0", field="neighbor_count"))
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.details == "neighbor_count: must be >= 0"
    status = status_pb2.Status.FromString(dict(context.trailing)[DETAILS_KEY])
    bad = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == "neighbor_count"


def test_unexpected_exception_is_internal_and_named():
    context = _call(ValueError("all input arrays must have the same shape"))
    assert context.code == grpc.StatusCode.INTERNAL
    assert "ValueError: all input arrays must have the same shape" in context.details
