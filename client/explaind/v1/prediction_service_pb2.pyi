from google.protobuf import struct_pb2 as _struct_pb2
from explaind.v1 import explanation_pb2 as _explanation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExplainRequest(_message.Message):
    __slots__ = ("name", "instances", "parameters", "explanation_spec_override", "deployed_model_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_SPEC_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    instances: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    parameters: _struct_pb2.Value
    explanation_spec_override: _explanation_pb2.ExplanationSpecOverride
    deployed_model_id: str
    def __init__(self, name: _Optional[str] = ..., instances: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., parameters: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., explanation_spec_override: _Optional[_Union[_explanation_pb2.ExplanationSpecOverride, _Mapping]] = ..., deployed_model_id: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("explanations", "deployed_model_id", "predictions")
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    explanations: _containers.RepeatedCompositeFieldContainer[_explanation_pb2.Explanation]
    deployed_model_id: str
    predictions: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, explanations: _Optional[_Iterable[_Union[_explanation_pb2.Explanation, _Mapping]]] = ..., deployed_model_id: _Optional[str] = ..., predictions: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("name", "instances", "parameters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    instances: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    parameters: _struct_pb2.Value
    def __init__(self, name: _Optional[str] = ..., instances: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., parameters: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions", "deployed_model_id")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    deployed_model_id: str
    def __init__(self, predictions: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., deployed_model_id: _Optional[str] = ...) -> None: ...
