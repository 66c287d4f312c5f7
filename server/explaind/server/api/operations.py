"""google.longrunning.Operations, translated to and from the control plane."""
from __future__ import annotations

from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2

from ..control.control_plane import ControlPlane
from ..errors import InvalidArgument
from .status import translate_errors

MAX_WAIT_SECONDS = 24 * 3600     # a Duration may hold 10,000 years; the wait itself goes by the call's deadline


class OperationsServicer(operations_pb2_grpc.OperationsServicer):
    def __init__(self, control: ControlPlane, foreign=None):
        """`foreign`: another surface's operation names (Vertex's
        projects/.../operations/{id}): `handles(name)`, then get/wait/cancel/delete."""
        self.control = control
        self.foreign = foreign

    def _foreign(self, name: str):
        return self.foreign if self.foreign is not None and self.foreign.handles(name) else None

    @translate_errors
    async def GetOperation(self, request, context):
        if foreign := self._foreign(request.name):
            return await foreign.get(request.name)
        return await self.control.get_operation(request.name)

    @translate_errors
    async def ListOperations(self, request, context):
        page = await self.control.list_operations(request.filter, request.page_size, request.page_token)
        return operations_pb2.ListOperationsResponse(operations=page.items, next_page_token=page.next_page_token)

    @translate_errors
    async def WaitOperation(self, request, context):
        """Returns when the operation is done, its timeout passes, or the call's deadline nears."""
        limits = []
        if request.HasField("timeout"):
            timeout = request.timeout.seconds + request.timeout.nanos / 1e9
            if not 0 <= timeout <= MAX_WAIT_SECONDS:
                raise InvalidArgument(f"must be between 0 and {MAX_WAIT_SECONDS} seconds", field="timeout")
            limits.append(timeout)
        remaining = context.time_remaining()
        if remaining is not None:
            limits.append(max(0.0, remaining - 0.1))   # answer before the caller gives up
        if foreign := self._foreign(request.name):
            return await foreign.wait(request.name, min(limits) if limits else None)
        return await self.control.wait_operation(request.name, min(limits) if limits else None)

    @translate_errors
    async def CancelOperation(self, request, context):
        if foreign := self._foreign(request.name):
            return await foreign.cancel(request.name)
        await self.control.cancel_operation(request.name)
        return empty_pb2.Empty()

    @translate_errors
    async def DeleteOperation(self, request, context):
        if foreign := self._foreign(request.name):
            return await foreign.delete(request.name)
        await self.control.delete_operation(request.name)
        return empty_pb2.Empty()
