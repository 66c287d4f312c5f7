import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from explaind.v1 import explanation_pb2 as _explanation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelContainerSpec(_message.Message):
    __slots__ = ("image_uri", "command", "args")
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    image_uri: str
    command: _containers.RepeatedScalarFieldContainer[str]
    args: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image_uri: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., args: _Optional[_Iterable[str]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "display_name", "description", "artifact_uri", "container_spec", "explanation_spec", "state", "create_time", "update_time", "labels", "index_info")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Model.State]
        BUILDING: _ClassVar[Model.State]
        READY: _ClassVar[Model.State]
        FAILED: _ClassVar[Model.State]
    STATE_UNSPECIFIED: Model.State
    BUILDING: Model.State
    READY: Model.State
    FAILED: Model.State
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_SPEC_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INDEX_INFO_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    artifact_uri: str
    container_spec: ModelContainerSpec
    explanation_spec: _explanation_pb2.ExplanationSpec
    state: Model.State
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    index_info: IndexInfo
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., container_spec: _Optional[_Union[ModelContainerSpec, _Mapping]] = ..., explanation_spec: _Optional[_Union[_explanation_pb2.ExplanationSpec, _Mapping]] = ..., state: _Optional[_Union[Model.State, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., index_info: _Optional[_Union[IndexInfo, _Mapping]] = ...) -> None: ...

class IndexInfo(_message.Message):
    __slots__ = ("example_count", "dimensions", "index_type", "index_bytes", "device", "distance_measure_type", "feature_norm_type", "nlist", "nprobe", "mapped_bytes", "examples_added_since_training", "retrain_recommended", "recall", "tuning")
    EXAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    INDEX_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_MEASURE_TYPE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NORM_TYPE_FIELD_NUMBER: _ClassVar[int]
    NLIST_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    MAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_ADDED_SINCE_TRAINING_FIELD_NUMBER: _ClassVar[int]
    RETRAIN_RECOMMENDED_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    TUNING_FIELD_NUMBER: _ClassVar[int]
    example_count: int
    dimensions: int
    index_type: str
    index_bytes: int
    device: str
    distance_measure_type: str
    feature_norm_type: str
    nlist: int
    nprobe: int
    mapped_bytes: int
    examples_added_since_training: int
    retrain_recommended: bool
    recall: IndexRecall
    tuning: IndexTuning
    def __init__(self, example_count: _Optional[int] = ..., dimensions: _Optional[int] = ..., index_type: _Optional[str] = ..., index_bytes: _Optional[int] = ..., device: _Optional[str] = ..., distance_measure_type: _Optional[str] = ..., feature_norm_type: _Optional[str] = ..., nlist: _Optional[int] = ..., nprobe: _Optional[int] = ..., mapped_bytes: _Optional[int] = ..., examples_added_since_training: _Optional[int] = ..., retrain_recommended: _Optional[bool] = ..., recall: _Optional[_Union[IndexRecall, _Mapping]] = ..., tuning: _Optional[_Union[IndexTuning, _Mapping]] = ...) -> None: ...

class IndexRecall(_message.Message):
    __slots__ = ("recall", "neighbor_count", "queries", "floor", "alternatives")
    RECALL_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    FLOOR_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    recall: float
    neighbor_count: int
    queries: int
    floor: float
    alternatives: _containers.RepeatedCompositeFieldContainer[RecallAlternative]
    def __init__(self, recall: _Optional[float] = ..., neighbor_count: _Optional[int] = ..., queries: _Optional[int] = ..., floor: _Optional[float] = ..., alternatives: _Optional[_Iterable[_Union[RecallAlternative, _Mapping]]] = ...) -> None: ...

class RecallAlternative(_message.Message):
    __slots__ = ("setting", "current_value", "value", "recall")
    SETTING_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    setting: str
    current_value: float
    value: float
    recall: float
    def __init__(self, setting: _Optional[str] = ..., current_value: _Optional[float] = ..., value: _Optional[float] = ..., recall: _Optional[float] = ...) -> None: ...

class IndexTuning(_message.Message):
    __slots__ = ("leaves_searched", "candidates", "code_shape", "target", "reason")
    LEAVES_SEARCHED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CODE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    leaves_searched: int
    candidates: int
    code_shape: str
    target: float
    reason: str
    def __init__(self, leaves_searched: _Optional[int] = ..., candidates: _Optional[int] = ..., code_shape: _Optional[str] = ..., target: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...
