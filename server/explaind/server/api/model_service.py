"""ModelService: UploadModel, GetModel, ListModels, DeleteModel."""
from __future__ import annotations

import asyncio

from google.protobuf import empty_pb2

from explaind.v1 import model_pb2, model_service_pb2, model_service_pb2_grpc

from ..errors import FailedPrecondition, InvalidArgument, Unimplemented
from . import names, page_tokens
from .status import translate_errors

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, uploads, models, registry):
        self.uploads = uploads
        self.models = models
        self.registry = registry

    @translate_errors
    async def UploadModel(self, request, context):
        op = await asyncio.to_thread(self.uploads.upload, request)
        return op.operation

    @translate_errors
    async def GetModel(self, request, context):
        record = await asyncio.to_thread(self.models.require, names.model_id(request.name))
        return record.model

    @translate_errors
    async def ListModels(self, request, context):
        if request.page_size < 0:
            raise InvalidArgument(f"must be >= 0, got {request.page_size}", field="page_size")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = page_tokens.decode(request.page_token)
        ids = [i for i in await asyncio.to_thread(self.models.list_ids) if i > after]
        response = model_service_pb2.ListModelsResponse()
        for model_id in ids:
            record = await asyncio.to_thread(self.models.get, model_id)
            if record is None:
                continue
            response.models.append(record.model)
            if len(response.models) == size:
                if model_id != ids[-1]:
                    response.next_page_token = page_tokens.encode(model_id)
                break
        return response

    @translate_errors
    async def DeleteModel(self, request, context):
        model_id = names.model_id(request.name)
        record = await asyncio.to_thread(self.models.require, model_id)
        if record.model.state == model_pb2.Model.BUILDING:
            raise FailedPrecondition(f"{record.model.name} is still building; cancel {record.operation} first",
                                     field="name")
        await asyncio.to_thread(self.models.delete, model_id)
        self.registry.remove(model_id)
        return empty_pb2.Empty()

    @translate_errors
    async def UpdateExplanationDataset(self, request, context):
        raise Unimplemented("UpdateExplanationDataset is not implemented yet; upload the model again "
                            "under a new id, then delete the old one")

