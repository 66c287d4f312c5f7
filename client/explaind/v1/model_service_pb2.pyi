import datetime

from google.longrunning import operations_pb2 as _operations_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from explaind.v1 import explanation_pb2 as _explanation_pb2
from explaind.v1 import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UploadModelRequest(_message.Message):
    __slots__ = ("parent", "model", "model_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    model: _model_pb2.Model
    model_id: str
    def __init__(self, parent: _Optional[str] = ..., model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ..., model_id: _Optional[str] = ...) -> None: ...

class UploadModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ...) -> None: ...

class UploadModelOperationMetadata(_message.Message):
    __slots__ = ("create_time", "update_time", "stage", "examples_embedded", "examples_total", "progress_percent", "model", "worker", "build_runner", "base_build", "recall", "warnings")
    class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STAGE_UNSPECIFIED: _ClassVar[UploadModelOperationMetadata.Stage]
        QUEUED: _ClassVar[UploadModelOperationMetadata.Stage]
        LOADING_MODEL: _ClassVar[UploadModelOperationMetadata.Stage]
        READING_EXAMPLES: _ClassVar[UploadModelOperationMetadata.Stage]
        EMBEDDING: _ClassVar[UploadModelOperationMetadata.Stage]
        BUILDING_INDEX: _ClassVar[UploadModelOperationMetadata.Stage]
        PUBLISHING: _ClassVar[UploadModelOperationMetadata.Stage]
        DONE: _ClassVar[UploadModelOperationMetadata.Stage]
    STAGE_UNSPECIFIED: UploadModelOperationMetadata.Stage
    QUEUED: UploadModelOperationMetadata.Stage
    LOADING_MODEL: UploadModelOperationMetadata.Stage
    READING_EXAMPLES: UploadModelOperationMetadata.Stage
    EMBEDDING: UploadModelOperationMetadata.Stage
    BUILDING_INDEX: UploadModelOperationMetadata.Stage
    PUBLISHING: UploadModelOperationMetadata.Stage
    DONE: UploadModelOperationMetadata.Stage
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_EMBEDDED_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    BUILD_RUNNER_FIELD_NUMBER: _ClassVar[int]
    BASE_BUILD_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    stage: UploadModelOperationMetadata.Stage
    examples_embedded: int
    examples_total: int
    progress_percent: float
    model: str
    worker: str
    build_runner: str
    base_build: str
    recall: _model_pb2.IndexRecall
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stage: _Optional[_Union[UploadModelOperationMetadata.Stage, str]] = ..., examples_embedded: _Optional[int] = ..., examples_total: _Optional[int] = ..., progress_percent: _Optional[float] = ..., model: _Optional[str] = ..., worker: _Optional[str] = ..., build_runner: _Optional[str] = ..., base_build: _Optional[str] = ..., recall: _Optional[_Union[_model_pb2.IndexRecall, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_model_pb2.Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[_model_pb2.Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateExplanationDatasetRequest(_message.Message):
    __slots__ = ("model", "examples", "remove_example_ids", "retrain")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    REMOVE_EXAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    RETRAIN_FIELD_NUMBER: _ClassVar[int]
    model: str
    examples: _explanation_pb2.Examples
    remove_example_ids: _containers.RepeatedScalarFieldContainer[str]
    retrain: bool
    def __init__(self, model: _Optional[str] = ..., examples: _Optional[_Union[_explanation_pb2.Examples, _Mapping]] = ..., remove_example_ids: _Optional[_Iterable[str]] = ..., retrain: _Optional[bool] = ...) -> None: ...

class UpdateExplanationDatasetResponse(_message.Message):
    __slots__ = ("model", "examples_added", "examples_removed", "retrain_recommended")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_ADDED_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    RETRAIN_RECOMMENDED_FIELD_NUMBER: _ClassVar[int]
    model: _model_pb2.Model
    examples_added: int
    examples_removed: int
    retrain_recommended: bool
    def __init__(self, model: _Optional[_Union[_model_pb2.Model, _Mapping]] = ..., examples_added: _Optional[int] = ..., examples_removed: _Optional[int] = ..., retrain_recommended: _Optional[bool] = ...) -> None: ...
