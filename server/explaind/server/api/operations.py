"""google.longrunning.Operations over the operation records in the store."""
from __future__ import annotations

import asyncio

from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2

from ..errors import InvalidArgument
from . import page_tokens
from .operation_filter import parse_filter
from .status import translate_errors

WAIT_POLL_SECONDS = 0.2
DEFAULT_PAGE_SIZE = 100


class OperationsServicer(operations_pb2_grpc.OperationsServicer):
    def __init__(self, operations, uploads):
        self.operations = operations
        self.uploads = uploads

    @translate_errors
    async def GetOperation(self, request, context):
        return (await asyncio.to_thread(self.operations.require, request.name)).operation

    @translate_errors
    async def ListOperations(self, request, context):
        if request.page_size < 0:
            raise InvalidArgument(f"must be >= 0, got {request.page_size}", field="page_size")
        wanted = parse_filter(request.filter)
        records = await asyncio.to_thread(self.operations.list)
        after = page_tokens.decode(request.page_token)
        remaining = [r for r in records if r.operation.name > after and wanted(r.operation)]   # sorted by name
        page = remaining[:request.page_size or DEFAULT_PAGE_SIZE]
        response = operations_pb2.ListOperationsResponse(operations=[r.operation for r in page])
        if len(page) < len(remaining):
            response.next_page_token = page_tokens.encode(page[-1].operation.name)
        return response

    @translate_errors
    async def WaitOperation(self, request, context):
        """Returns when the operation is done, its timeout passes, or the call's deadline nears."""
        loop = asyncio.get_running_loop()
        limits = []
        if request.HasField("timeout"):
            limits.append(request.timeout.ToTimedelta().total_seconds())
        remaining = context.time_remaining()
        if remaining is not None:
            limits.append(max(0.0, remaining - 0.1))   # answer before the caller gives up
        end = loop.time() + min(limits) if limits else None
        while True:
            record = await asyncio.to_thread(self.operations.require, request.name)
            if record.operation.done or (end is not None and loop.time() >= end):
                return record.operation
            wait = WAIT_POLL_SECONDS if end is None else min(WAIT_POLL_SECONDS, max(0.0, end - loop.time()))
            await asyncio.sleep(wait)

    @translate_errors
    async def CancelOperation(self, request, context):
        record = await asyncio.to_thread(self.operations.require, request.name)
        await asyncio.to_thread(self.uploads.cancel, record)
        return empty_pb2.Empty()

    @translate_errors
    async def DeleteOperation(self, request, context):
        record = await asyncio.to_thread(self.operations.require, request.name)
        await asyncio.to_thread(self.operations.delete, record.op_id)
        return empty_pb2.Empty()

