import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from explaind.v1 import explanation_pb2 as _explanation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Model(_message.Message):
    __slots__ = ("name", "version_id", "version_aliases", "version_description", "display_name", "description", "predict_schemata", "metadata_schema_uri", "metadata", "container_spec", "artifact_uri", "supported_deployment_resources_types", "create_time", "update_time", "deployed_models", "explanation_spec", "etag", "labels", "encryption_spec", "version_create_time", "version_update_time")
    class DeploymentResourcesType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DEPLOYMENT_RESOURCES_TYPE_UNSPECIFIED: _ClassVar[Model.DeploymentResourcesType]
        DEDICATED_RESOURCES: _ClassVar[Model.DeploymentResourcesType]
        AUTOMATIC_RESOURCES: _ClassVar[Model.DeploymentResourcesType]
        SHARED_RESOURCES: _ClassVar[Model.DeploymentResourcesType]
    DEPLOYMENT_RESOURCES_TYPE_UNSPECIFIED: Model.DeploymentResourcesType
    DEDICATED_RESOURCES: Model.DeploymentResourcesType
    AUTOMATIC_RESOURCES: Model.DeploymentResourcesType
    SHARED_RESOURCES: Model.DeploymentResourcesType
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ALIASES_FIELD_NUMBER: _ClassVar[int]
    VERSION_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PREDICT_SCHEMATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_SCHEMA_URI_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_SPEC_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    SUPPORTED_DEPLOYMENT_RESOURCES_TYPES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODELS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTION_SPEC_FIELD_NUMBER: _ClassVar[int]
    VERSION_CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version_id: str
    version_aliases: _containers.RepeatedScalarFieldContainer[str]
    version_description: str
    display_name: str
    description: str
    predict_schemata: PredictSchemata
    metadata_schema_uri: str
    metadata: _struct_pb2.Value
    container_spec: ModelContainerSpec
    artifact_uri: str
    supported_deployment_resources_types: _containers.RepeatedScalarFieldContainer[Model.DeploymentResourcesType]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    deployed_models: _containers.RepeatedCompositeFieldContainer[DeployedModelRef]
    explanation_spec: _explanation_pb2.ExplanationSpec
    etag: str
    labels: _containers.ScalarMap[str, str]
    encryption_spec: EncryptionSpec
    version_create_time: _timestamp_pb2.Timestamp
    version_update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version_id: _Optional[str] = ..., version_aliases: _Optional[_Iterable[str]] = ..., version_description: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., predict_schemata: _Optional[_Union[PredictSchemata, _Mapping]] = ..., metadata_schema_uri: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., container_spec: _Optional[_Union[ModelContainerSpec, _Mapping]] = ..., artifact_uri: _Optional[str] = ..., supported_deployment_resources_types: _Optional[_Iterable[_Union[Model.DeploymentResourcesType, str]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deployed_models: _Optional[_Iterable[_Union[DeployedModelRef, _Mapping]]] = ..., explanation_spec: _Optional[_Union[_explanation_pb2.ExplanationSpec, _Mapping]] = ..., etag: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., encryption_spec: _Optional[_Union[EncryptionSpec, _Mapping]] = ..., version_create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version_update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PredictSchemata(_message.Message):
    __slots__ = ("instance_schema_uri", "parameters_schema_uri", "prediction_schema_uri")
    INSTANCE_SCHEMA_URI_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_SCHEMA_URI_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_SCHEMA_URI_FIELD_NUMBER: _ClassVar[int]
    instance_schema_uri: str
    parameters_schema_uri: str
    prediction_schema_uri: str
    def __init__(self, instance_schema_uri: _Optional[str] = ..., parameters_schema_uri: _Optional[str] = ..., prediction_schema_uri: _Optional[str] = ...) -> None: ...

class ModelContainerSpec(_message.Message):
    __slots__ = ("image_uri", "command", "args", "env", "ports", "predict_route", "health_route", "grpc_ports", "deployment_timeout", "shared_memory_size_mb", "startup_probe", "health_probe", "liveness_probe", "invoke_route_prefix")
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    PREDICT_ROUTE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_ROUTE_FIELD_NUMBER: _ClassVar[int]
    GRPC_PORTS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SHARED_MEMORY_SIZE_MB_FIELD_NUMBER: _ClassVar[int]
    STARTUP_PROBE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_PROBE_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_PROBE_FIELD_NUMBER: _ClassVar[int]
    INVOKE_ROUTE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    image_uri: str
    command: _containers.RepeatedScalarFieldContainer[str]
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedCompositeFieldContainer[EnvVar]
    ports: _containers.RepeatedCompositeFieldContainer[Port]
    predict_route: str
    health_route: str
    grpc_ports: _containers.RepeatedCompositeFieldContainer[Port]
    deployment_timeout: _duration_pb2.Duration
    shared_memory_size_mb: int
    startup_probe: Probe
    health_probe: Probe
    liveness_probe: Probe
    invoke_route_prefix: str
    def __init__(self, image_uri: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[_Union[EnvVar, _Mapping]]] = ..., ports: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., predict_route: _Optional[str] = ..., health_route: _Optional[str] = ..., grpc_ports: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., deployment_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., shared_memory_size_mb: _Optional[int] = ..., startup_probe: _Optional[_Union[Probe, _Mapping]] = ..., health_probe: _Optional[_Union[Probe, _Mapping]] = ..., liveness_probe: _Optional[_Union[Probe, _Mapping]] = ..., invoke_route_prefix: _Optional[str] = ...) -> None: ...

class EnvVar(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Port(_message.Message):
    __slots__ = ("container_port",)
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    container_port: int
    def __init__(self, container_port: _Optional[int] = ...) -> None: ...

class Probe(_message.Message):
    __slots__ = ("exec", "period_seconds", "timeout_seconds", "failure_threshold", "success_threshold", "initial_delay_seconds")
    class ExecAction(_message.Message):
        __slots__ = ("command",)
        COMMAND_FIELD_NUMBER: _ClassVar[int]
        command: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, command: _Optional[_Iterable[str]] = ...) -> None: ...
    EXEC_FIELD_NUMBER: _ClassVar[int]
    PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    exec: Probe.ExecAction
    period_seconds: int
    timeout_seconds: int
    failure_threshold: int
    success_threshold: int
    initial_delay_seconds: int
    def __init__(self, exec: _Optional[_Union[Probe.ExecAction, _Mapping]] = ..., period_seconds: _Optional[int] = ..., timeout_seconds: _Optional[int] = ..., failure_threshold: _Optional[int] = ..., success_threshold: _Optional[int] = ..., initial_delay_seconds: _Optional[int] = ...) -> None: ...

class DeployedModelRef(_message.Message):
    __slots__ = ("endpoint", "deployed_model_id")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    deployed_model_id: str
    def __init__(self, endpoint: _Optional[str] = ..., deployed_model_id: _Optional[str] = ...) -> None: ...

class EncryptionSpec(_message.Message):
    __slots__ = ("kms_key_name",)
    KMS_KEY_NAME_FIELD_NUMBER: _ClassVar[int]
    kms_key_name: str
    def __init__(self, kms_key_name: _Optional[str] = ...) -> None: ...

class GenericOperationMetadata(_message.Message):
    __slots__ = ("partial_failures", "create_time", "update_time")
    PARTIAL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    partial_failures: _containers.RepeatedCompositeFieldContainer[_status_pb2.Status]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, partial_failures: _Optional[_Iterable[_Union[_status_pb2.Status, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UploadModelRequest(_message.Message):
    __slots__ = ("parent", "parent_model", "model_id", "model", "service_account")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PARENT_MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    parent: str
    parent_model: str
    model_id: str
    model: Model
    service_account: str
    def __init__(self, parent: _Optional[str] = ..., parent_model: _Optional[str] = ..., model_id: _Optional[str] = ..., model: _Optional[_Union[Model, _Mapping]] = ..., service_account: _Optional[str] = ...) -> None: ...

class UploadModelResponse(_message.Message):
    __slots__ = ("model", "model_version_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version_id: str
    def __init__(self, model: _Optional[str] = ..., model_version_id: _Optional[str] = ...) -> None: ...

class UploadModelOperationMetadata(_message.Message):
    __slots__ = ("generic_metadata",)
    GENERIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    generic_metadata: GenericOperationMetadata
    def __init__(self, generic_metadata: _Optional[_Union[GenericOperationMetadata, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
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

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteOperationMetadata(_message.Message):
    __slots__ = ("generic_metadata",)
    GENERIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    generic_metadata: GenericOperationMetadata
    def __init__(self, generic_metadata: _Optional[_Union[GenericOperationMetadata, _Mapping]] = ...) -> None: ...

class UpdateExplanationDatasetRequest(_message.Message):
    __slots__ = ("model", "examples")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    model: str
    examples: _explanation_pb2.Examples
    def __init__(self, model: _Optional[str] = ..., examples: _Optional[_Union[_explanation_pb2.Examples, _Mapping]] = ...) -> None: ...

class UpdateExplanationDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateExplanationDatasetOperationMetadata(_message.Message):
    __slots__ = ("generic_metadata",)
    GENERIC_METADATA_FIELD_NUMBER: _ClassVar[int]
    generic_metadata: GenericOperationMetadata
    def __init__(self, generic_metadata: _Optional[_Union[GenericOperationMetadata, _Mapping]] = ...) -> None: ...
