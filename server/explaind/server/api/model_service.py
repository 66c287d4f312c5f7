"""explaind.v1 ModelService: UploadModel, GetModel, ListModels, DeleteModel."""
from __future__ import annotations

from google.protobuf import empty_pb2

from explaind.v1 import model_service_pb2, model_service_pb2_grpc

from ..control.control_plane import ControlPlane
from . import names
from .status import translate_errors


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, control: ControlPlane):
        self.control = control

    @translate_errors
    async def UploadModel(self, request, context):
        return await self.control.upload_model(request)

    @translate_errors
    async def GetModel(self, request, context):
        return await self.control.get_model(names.model_id(request.name))

    @translate_errors
    async def ListModels(self, request, context):
        page = await self.control.list_models(request.page_size, request.page_token)
        return model_service_pb2.ListModelsResponse(models=page.items, next_page_token=page.next_page_token)

    @translate_errors
    async def DeleteModel(self, request, context):
        await self.control.delete_model(names.model_id(request.name))
        return empty_pb2.Empty()

    @translate_errors
    async def UpdateExplanationDataset(self, request, context):
        return await self.control.update_explanation_dataset(names.model_id(request.model, field="model"), request)
