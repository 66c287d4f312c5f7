from google.protobuf import struct_pb2 as _struct_pb2
from explaind.v1 import explanation_pb2 as _explanation_pb2
from explaind.vertex.v1 import prediction_service_pb2 as _prediction_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExplainRequest(_message.Message):
    __slots__ = ("endpoint", "instances", "parameters", "explanation_spec_override", "concurrent_explanation_spec_override", "deployed_model_id")
    class ConcurrentExplanationSpecOverrideEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _explanation_pb2.ExplanationSpecOverride
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_explanation_pb2.ExplanationSpecOverride, _Mapping]] = ...) -> None: ...
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_SPEC_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_EXPLANATION_SPEC_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    instances: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    parameters: _struct_pb2.Value
    explanation_spec_override: _explanation_pb2.ExplanationSpecOverride
    concurrent_explanation_spec_override: _containers.MessageMap[str, _explanation_pb2.ExplanationSpecOverride]
    deployed_model_id: str
    def __init__(self, endpoint: _Optional[str] = ..., instances: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., parameters: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., explanation_spec_override: _Optional[_Union[_explanation_pb2.ExplanationSpecOverride, _Mapping]] = ..., concurrent_explanation_spec_override: _Optional[_Mapping[str, _explanation_pb2.ExplanationSpecOverride]] = ..., deployed_model_id: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("explanations", "concurrent_explanations", "deployed_model_id", "predictions")
    class ConcurrentExplanation(_message.Message):
        __slots__ = ("explanations",)
        EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
        explanations: _containers.RepeatedCompositeFieldContainer[_prediction_service_pb2.Explanation]
        def __init__(self, explanations: _Optional[_Iterable[_Union[_prediction_service_pb2.Explanation, _Mapping]]] = ...) -> None: ...
    class ConcurrentExplanationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ExplainResponse.ConcurrentExplanation
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ExplainResponse.ConcurrentExplanation, _Mapping]] = ...) -> None: ...
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    explanations: _containers.RepeatedCompositeFieldContainer[_prediction_service_pb2.Explanation]
    concurrent_explanations: _containers.MessageMap[str, ExplainResponse.ConcurrentExplanation]
    deployed_model_id: str
    predictions: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, explanations: _Optional[_Iterable[_Union[_prediction_service_pb2.Explanation, _Mapping]]] = ..., concurrent_explanations: _Optional[_Mapping[str, ExplainResponse.ConcurrentExplanation]] = ..., deployed_model_id: _Optional[str] = ..., predictions: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...
