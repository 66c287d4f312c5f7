"""google.longrunning.Operations over the operation records in the store."""
from __future__ import annotations

import asyncio
import base64

from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2

from ..errors import InvalidArgument
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
        records = await asyncio.to_thread(self.operations.list)
        start = _decode_token(request.page_token)
        size = request.page_size or DEFAULT_PAGE_SIZE
        page = records[start:start + size]
        response = operations_pb2.ListOperationsResponse(operations=[r.operation for r in page])
        if start + size < len(records):
            response.next_page_token = base64.urlsafe_b64encode(str(start + size).encode()).decode()
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


def _decode_token(token: str) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except ValueError:
        raise InvalidArgument("not a token this server issued", field="page_token") from None
