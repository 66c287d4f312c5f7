from google.protobuf import struct_pb2 as _struct_pb2
from explaind.v1 import explanation_pb2 as _explanation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExplainRequest(_message.Message):
    __slots__ = ("endpoint", "instances", "parameters", "explanation_spec_override", "deployed_model_id")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_SPEC_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    instances: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    parameters: _struct_pb2.Value
    explanation_spec_override: _explanation_pb2.ExplanationSpecOverride
    deployed_model_id: str
    def __init__(self, endpoint: _Optional[str] = ..., instances: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., parameters: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., explanation_spec_override: _Optional[_Union[_explanation_pb2.ExplanationSpecOverride, _Mapping]] = ..., deployed_model_id: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("explanations", "deployed_model_id", "predictions")
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    deployed_model_id: str
    predictions: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ..., deployed_model_id: _Optional[str] = ..., predictions: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("endpoint", "instances", "parameters", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    instances: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    parameters: _struct_pb2.Value
    labels: _containers.ScalarMap[str, str]
    def __init__(self, endpoint: _Optional[str] = ..., instances: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., parameters: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions", "deployed_model_id", "model", "model_display_name", "model_version_id", "metadata")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    deployed_model_id: str
    model: str
    model_display_name: str
    model_version_id: str
    metadata: _struct_pb2.Value
    def __init__(self, predictions: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., deployed_model_id: _Optional[str] = ..., model: _Optional[str] = ..., model_display_name: _Optional[str] = ..., model_version_id: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("attributions", "neighbors")
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    attributions: _containers.RepeatedCompositeFieldContainer[Attribution]
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    def __init__(self, attributions: _Optional[_Iterable[_Union[Attribution, _Mapping]]] = ..., neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("neighbor_id", "neighbor_distance")
    NEIGHBOR_ID_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOR_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    neighbor_id: str
    neighbor_distance: float
    def __init__(self, neighbor_id: _Optional[str] = ..., neighbor_distance: _Optional[float] = ...) -> None: ...

class Attribution(_message.Message):
    __slots__ = ("baseline_output_value", "instance_output_value", "feature_attributions", "output_index", "output_display_name", "approximation_error", "output_name")
    BASELINE_OUTPUT_VALUE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_OUTPUT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_INDEX_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAME_FIELD_NUMBER: _ClassVar[int]
    baseline_output_value: float
    instance_output_value: float
    feature_attributions: _struct_pb2.Value
    output_index: _containers.RepeatedScalarFieldContainer[int]
    output_display_name: str
    approximation_error: float
    output_name: str
    def __init__(self, baseline_output_value: _Optional[float] = ..., instance_output_value: _Optional[float] = ..., feature_attributions: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., output_index: _Optional[_Iterable[int]] = ..., output_display_name: _Optional[str] = ..., approximation_error: _Optional[float] = ..., output_name: _Optional[str] = ...) -> None: ...
