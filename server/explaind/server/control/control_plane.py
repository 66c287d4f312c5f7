"""The control plane: models and their upload operations, for every API surface.

Uploads go to the build side; model and operation records are read from the
store; unloading a deleted model goes to the serving manager. Servicers
(explaind.v1 ModelService and google.longrunning.Operations, and any other
surface) translate their wire messages and call these methods.
"""
from __future__ import annotations

import asyncio
import dataclasses

from google.longrunning import operations_pb2

from explaind.v1 import model_pb2, model_service_pb2

from ..batch.manager import is_batch
from ..builds.uploads import UploadManager
from ..errors import FailedPrecondition, InvalidArgument
from ..store.models import ModelStore
from ..store.operations import OperationStore
from . import page_tokens
from .operation_filter import parse_filter

DEFAULT_MODELS_PAGE = 50
MAX_MODELS_PAGE = 1000
DEFAULT_OPERATIONS_PAGE = 100
WAIT_POLL_SECONDS = 0.2


@dataclasses.dataclass
class Page:
    items: list
    next_page_token: str = ""


class ControlPlane:
    def __init__(self, uploads: UploadManager, models: ModelStore, operations: OperationStore, manager,
                 batches=None):
        self.uploads = uploads
        self.models = models
        self.operations = operations
        self.manager = manager          # serving.ModelManager: a deleted model is unloaded at once
        self.batches = batches          # batch.manager.BatchManager: cancels its jobs at once

    # --- models ---
    async def upload_model(self, request: model_service_pb2.UploadModelRequest) -> operations_pb2.Operation:
        return (await asyncio.to_thread(self.uploads.upload, request)).operation

    async def update_explanation_dataset(self, model_id: str,
                                         request: model_service_pb2.UpdateExplanationDatasetRequest
                                         ) -> operations_pb2.Operation:
        return (await asyncio.to_thread(self.uploads.update, model_id, request)).operation

    async def get_model(self, model_id: str) -> model_pb2.Model:
        return (await asyncio.to_thread(self.models.require, model_id)).model

    async def list_models(self, page_size: int, page_token: str) -> Page:
        size = _page_size(page_size, DEFAULT_MODELS_PAGE, MAX_MODELS_PAGE)
        after = page_tokens.decode(page_token)
        ids = [i for i in await asyncio.to_thread(self.models.list_ids) if i > after]
        page = Page([])
        for model_id in ids:
            record = await asyncio.to_thread(self.models.get, model_id)
            if record is None:
                continue
            page.items.append(record.model)
            if len(page.items) == size:
                if model_id != ids[-1]:
                    page.next_page_token = page_tokens.encode(model_id)
                break
        return page

    async def delete_model(self, model_id: str) -> None:
        record = await asyncio.to_thread(self.models.require, model_id)
        if record.model.state == model_pb2.Model.BUILDING:
            raise FailedPrecondition(f"{record.model.name} is still building; cancel {record.operation} first",
                                     field="name")
        claim = await asyncio.to_thread(self.models.get_claim, model_id)
        if claim is not None:
            raise FailedPrecondition(f"{record.model.name} is being updated; cancel {claim.operation} first",
                                     field="name")
        await asyncio.to_thread(self.models.delete, model_id)
        self.manager.unload(model_id)

    # --- operations ---
    async def get_operation(self, name: str) -> operations_pb2.Operation:
        return (await asyncio.to_thread(self.operations.require, name)).operation

    async def list_operations(self, filter_text: str, page_size: int, page_token: str) -> Page:
        size = _page_size(page_size, DEFAULT_OPERATIONS_PAGE, None)
        wanted = parse_filter(filter_text)
        records = await asyncio.to_thread(self.operations.list)
        after = page_tokens.decode(page_token)
        remaining = [r.operation for r in records if r.operation.name > after and wanted(r.operation)]  # by name
        page = Page(remaining[:size])
        if len(page.items) < len(remaining):
            page.next_page_token = page_tokens.encode(page.items[-1].name)
        return page

    async def wait_operation(self, name: str, timeout: float | None) -> operations_pb2.Operation:
        """The operation once done, or as it is when `timeout` seconds have passed (None: no limit)."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            operation = await self.get_operation(name)
            if operation.done or (end is not None and loop.time() >= end):
                return operation
            wait = WAIT_POLL_SECONDS if end is None else min(WAIT_POLL_SECONDS, max(0.0, end - loop.time()))
            await asyncio.sleep(wait)

    async def cancel_operation(self, name: str) -> None:
        record = await asyncio.to_thread(self.operations.require, name)
        if self.batches is not None and is_batch(record):
            if not record.operation.done:       # as for an upload, cancelling an ended job does nothing
                await asyncio.to_thread(self.batches.cancel, record)
            return
        await asyncio.to_thread(self.uploads.cancel, record)

    async def delete_operation(self, name: str) -> None:
        record = await asyncio.to_thread(self.operations.require, name)
        await asyncio.to_thread(self.operations.delete, record.op_id)


def _page_size(requested: int, default: int, maximum: int | None) -> int:
    if requested < 0:
        raise InvalidArgument(f"must be >= 0, got {requested}", field="page_size")
    size = requested or default
    return min(size, maximum) if maximum else size
