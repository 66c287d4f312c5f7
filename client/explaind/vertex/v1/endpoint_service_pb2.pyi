import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from explaind.v1 import explanation_pb2 as _explanation_pb2
from explaind.vertex.v1 import model_service_pb2 as _model_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AcceleratorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCELERATOR_TYPE_UNSPECIFIED: _ClassVar[AcceleratorType]
    NVIDIA_TESLA_K80: _ClassVar[AcceleratorType]
    NVIDIA_TESLA_P100: _ClassVar[AcceleratorType]
    NVIDIA_TESLA_V100: _ClassVar[AcceleratorType]
    NVIDIA_TESLA_P4: _ClassVar[AcceleratorType]
    NVIDIA_TESLA_T4: _ClassVar[AcceleratorType]
    NVIDIA_TESLA_A100: _ClassVar[AcceleratorType]
    NVIDIA_A100_80GB: _ClassVar[AcceleratorType]
    NVIDIA_L4: _ClassVar[AcceleratorType]
    NVIDIA_H100_80GB: _ClassVar[AcceleratorType]
    NVIDIA_H100_MEGA_80GB: _ClassVar[AcceleratorType]
    NVIDIA_H200_141GB: _ClassVar[AcceleratorType]
    NVIDIA_B200: _ClassVar[AcceleratorType]
    NVIDIA_GB200: _ClassVar[AcceleratorType]
    NVIDIA_RTX_PRO_6000: _ClassVar[AcceleratorType]
    TPU_V2: _ClassVar[AcceleratorType]
    TPU_V3: _ClassVar[AcceleratorType]
    TPU_V4_POD: _ClassVar[AcceleratorType]
    TPU_V5_LITEPOD: _ClassVar[AcceleratorType]
ACCELERATOR_TYPE_UNSPECIFIED: AcceleratorType
NVIDIA_TESLA_K80: AcceleratorType
NVIDIA_TESLA_P100: AcceleratorType
NVIDIA_TESLA_V100: AcceleratorType
NVIDIA_TESLA_P4: AcceleratorType
NVIDIA_TESLA_T4: AcceleratorType
NVIDIA_TESLA_A100: AcceleratorType
NVIDIA_A100_80GB: AcceleratorType
NVIDIA_L4: AcceleratorType
NVIDIA_H100_80GB: AcceleratorType
NVIDIA_H100_MEGA_80GB: AcceleratorType
NVIDIA_H200_141GB: AcceleratorType
NVIDIA_B200: AcceleratorType
NVIDIA_GB200: AcceleratorType
NVIDIA_RTX_PRO_6000: AcceleratorType
TPU_V2: AcceleratorType
TPU_V3: AcceleratorType
TPU_V4_POD: AcceleratorType
TPU_V5_LITEPOD: AcceleratorType

class Endpoint(_message.Message):
    __slots__ = ("name", "display_name", "description", "deployed_models", "traffic_split", "etag", "labels", "create_time", "update_time", "encryption_spec", "network", "enable_private_service_connect", "dedicated_endpoint_enabled")
    class TrafficSplitEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
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
    DEPLOYED_MODELS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_SPLIT_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_SPEC_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ENABLE_PRIVATE_SERVICE_CONNECT_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_ENDPOINT_ENABLED_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    deployed_models: _containers.RepeatedCompositeFieldContainer[DeployedModel]
    traffic_split: _containers.ScalarMap[str, int]
    etag: str
    labels: _containers.ScalarMap[str, str]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    encryption_spec: _model_service_pb2.EncryptionSpec
    network: str
    enable_private_service_connect: bool
    dedicated_endpoint_enabled: bool
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., deployed_models: _Optional[_Iterable[_Union[DeployedModel, _Mapping]]] = ..., traffic_split: _Optional[_Mapping[str, int]] = ..., etag: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., encryption_spec: _Optional[_Union[_model_service_pb2.EncryptionSpec, _Mapping]] = ..., network: _Optional[str] = ..., enable_private_service_connect: _Optional[bool] = ..., dedicated_endpoint_enabled: _Optional[bool] = ...) -> None: ...

class DeployedModel(_message.Message):
    __slots__ = ("id", "model", "model_version_id", "display_name", "create_time", "dedicated_resources", "automatic_resources", "shared_resources", "explanation_spec", "disable_explanations", "service_account", "enable_access_logging", "disable_container_logging")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SHARED_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    DISABLE_EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ENABLE_ACCESS_LOGGING_FIELD_NUMBER: _ClassVar[int]
    DISABLE_CONTAINER_LOGGING_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    model_version_id: str
    display_name: str
    create_time: _timestamp_pb2.Timestamp
    dedicated_resources: DedicatedResources
    automatic_resources: AutomaticResources
    shared_resources: str
    explanation_spec: _explanation_pb2.ExplanationSpec
    disable_explanations: bool
    service_account: str
    enable_access_logging: bool
    disable_container_logging: bool
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., model_version_id: _Optional[str] = ..., display_name: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dedicated_resources: _Optional[_Union[DedicatedResources, _Mapping]] = ..., automatic_resources: _Optional[_Union[AutomaticResources, _Mapping]] = ..., shared_resources: _Optional[str] = ..., explanation_spec: _Optional[_Union[_explanation_pb2.ExplanationSpec, _Mapping]] = ..., disable_explanations: _Optional[bool] = ..., service_account: _Optional[str] = ..., enable_access_logging: _Optional[bool] = ..., disable_container_logging: _Optional[bool] = ...) -> None: ...

class MachineSpec(_message.Message):
    __slots__ = ("machine_type", "accelerator_type", "accelerator_count", "tpu_topology")
    MACHINE_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_TYPE_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_COUNT_FIELD_NUMBER: _ClassVar[int]
    TPU_TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    machine_type: str
    accelerator_type: AcceleratorType
    accelerator_count: int
    tpu_topology: str
    def __init__(self, machine_type: _Optional[str] = ..., accelerator_type: _Optional[_Union[AcceleratorType, str]] = ..., accelerator_count: _Optional[int] = ..., tpu_topology: _Optional[str] = ...) -> None: ...

class AutoscalingMetricSpec(_message.Message):
    __slots__ = ("metric_name", "target")
    METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    metric_name: str
    target: int
    def __init__(self, metric_name: _Optional[str] = ..., target: _Optional[int] = ...) -> None: ...

class DedicatedResources(_message.Message):
    __slots__ = ("machine_spec", "min_replica_count", "max_replica_count", "required_replica_count", "autoscaling_metric_specs", "spot")
    MACHINE_SPEC_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALING_METRIC_SPECS_FIELD_NUMBER: _ClassVar[int]
    SPOT_FIELD_NUMBER: _ClassVar[int]
    machine_spec: MachineSpec
    min_replica_count: int
    max_replica_count: int
    required_replica_count: int
    autoscaling_metric_specs: _containers.RepeatedCompositeFieldContainer[AutoscalingMetricSpec]
    spot: bool
    def __init__(self, machine_spec: _Optional[_Union[MachineSpec, _Mapping]] = ..., min_replica_count: _Optional[int] = ..., max_replica_count: _Optional[int] = ..., required_replica_count: _Optional[int] = ..., autoscaling_metric_specs: _Optional[_Iterable[_Union[AutoscalingMetricSpec, _Mapping]]] = ..., spot: _Optional[bool] = ...) -> None: ...

class AutomaticResources(_message.Message):
    __slots__ = ("min_replica_count", "max_replica_count")
    MIN_REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    min_replica_count: int
    max_replica_count: int
    def __init__(self, min_replica_count: _Optional[int] = ..., max_replica_count: _Optional[int] = ...) -> None: ...

class CreateEndpointRequest(_message.Message):
    __slots__ = ("parent", "endpoint", "endpoint_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    endpoint: Endpoint
    endpoint_id: str
    def __init__(self, parent: _Optional[str] = ..., endpoint: _Optional[_Union[Endpoint, _Mapping]] = ..., endpoint_id: _Optional[str] = ...) -> None: ...

class CreateEndpointOperationMetadata(_message.Message):
    __slots__ = ("generic_metadata",)
    GENERIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    generic_metadata: _model_service_pb2.GenericOperationMetadata
    def __init__(self, generic_metadata: _Optional[_Union[_model_service_pb2.GenericOperationMetadata, _Mapping]] = ...) -> None: ...

class GetEndpointRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListEndpointsRequest(_message.Message):
    __slots__ = ("parent", "filter", "page_size", "page_token", "read_mask", "order_by")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    parent: str
    filter: str
    page_size: int
    page_token: str
    read_mask: _field_mask_pb2.FieldMask
    order_by: str
    def __init__(self, parent: _Optional[str] = ..., filter: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListEndpointsResponse(_message.Message):
    __slots__ = ("endpoints", "next_page_token")
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    next_page_token: str
    def __init__(self, endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateEndpointRequest(_message.Message):
    __slots__ = ("endpoint", "update_mask")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    endpoint: Endpoint
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, endpoint: _Optional[_Union[Endpoint, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteEndpointRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeployModelRequest(_message.Message):
    __slots__ = ("endpoint", "deployed_model", "traffic_split")
    class TrafficSplitEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_SPLIT_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    deployed_model: DeployedModel
    traffic_split: _containers.ScalarMap[str, int]
    def __init__(self, endpoint: _Optional[str] = ..., deployed_model: _Optional[_Union[DeployedModel, _Mapping]] = ..., traffic_split: _Optional[_Mapping[str, int]] = ...) -> None: ...

class DeployModelResponse(_message.Message):
    __slots__ = ("deployed_model",)
    DEPLOYED_MODEL_FIELD_NUMBER: _ClassVar[int]
    deployed_model: DeployedModel
    def __init__(self, deployed_model: _Optional[_Union[DeployedModel, _Mapping]] = ...) -> None: ...

class DeployModelOperationMetadata(_message.Message):
    __slots__ = ("generic_metadata",)
    GENERIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    generic_metadata: _model_service_pb2.GenericOperationMetadata
    def __init__(self, generic_metadata: _Optional[_Union[_model_service_pb2.GenericOperationMetadata, _Mapping]] = ...) -> None: ...

class UndeployModelRequest(_message.Message):
    __slots__ = ("endpoint", "deployed_model_id", "traffic_split")
    class TrafficSplitEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_SPLIT_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    deployed_model_id: str
    traffic_split: _containers.ScalarMap[str, int]
    def __init__(self, endpoint: _Optional[str] = ..., deployed_model_id: _Optional[str] = ..., traffic_split: _Optional[_Mapping[str, int]] = ...) -> None: ...

class UndeployModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UndeployModelOperationMetadata(_message.Message):
    __slots__ = ("generic_metadata",)
    GENERIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    generic_metadata: _model_service_pb2.GenericOperationMetadata
    def __init__(self, generic_metadata: _Optional[_Union[_model_service_pb2.GenericOperationMetadata, _Mapping]] = ...) -> None: ...
