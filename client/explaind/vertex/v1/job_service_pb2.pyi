import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from explaind.v1 import batch_service_pb2 as _batch_service_pb2
from explaind.v1 import explanation_pb2 as _explanation_pb2
from explaind.vertex.v1 import endpoint_service_pb2 as _endpoint_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchPredictionJob(_message.Message):
    __slots__ = ("name", "display_name", "model", "model_version_id", "input_config", "instance_config", "model_parameters", "output_config", "dedicated_resources", "service_account", "manual_batch_tuning_parameters", "generate_explanation", "explanation_spec", "output_info", "state", "error", "partial_failures", "completion_stats", "create_time", "start_time", "end_time", "update_time", "labels", "disable_container_logging")
    class InputConfig(_message.Message):
        __slots__ = ("gcs_source", "instances_format")
        GCS_SOURCE_FIELD_NUMBER: _ClassVar[int]
        INSTANCES_FORMAT_FIELD_NUMBER: _ClassVar[int]
        gcs_source: _explanation_pb2.GcsSource
        instances_format: str
        def __init__(self, gcs_source: _Optional[_Union[_explanation_pb2.GcsSource, _Mapping]] = ..., instances_format: _Optional[str] = ...) -> None: ...
    class OutputConfig(_message.Message):
        __slots__ = ("gcs_destination", "predictions_format")
        GCS_DESTINATION_FIELD_NUMBER: _ClassVar[int]
        PREDICTIONS_FORMAT_FIELD_NUMBER: _ClassVar[int]
        gcs_destination: GcsDestination
        predictions_format: str
        def __init__(self, gcs_destination: _Optional[_Union[GcsDestination, _Mapping]] = ..., predictions_format: _Optional[str] = ...) -> None: ...
    class OutputInfo(_message.Message):
        __slots__ = ("gcs_output_directory",)
        GCS_OUTPUT_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
        gcs_output_directory: str
        def __init__(self, gcs_output_directory: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_CONFIG_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    MODEL_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CONFIG_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MANUAL_BATCH_TUNING_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    GENERATE_EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_INFO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_STATS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    DISABLE_CONTAINER_LOGGING_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    model: str
    model_version_id: str
    input_config: BatchPredictionJob.InputConfig
    instance_config: _batch_service_pb2.InstanceConfig
    model_parameters: _struct_pb2.Value
    output_config: BatchPredictionJob.OutputConfig
    dedicated_resources: BatchDedicatedResources
    service_account: str
    manual_batch_tuning_parameters: ManualBatchTuningParameters
    generate_explanation: bool
    explanation_spec: _explanation_pb2.ExplanationSpec
    output_info: BatchPredictionJob.OutputInfo
    state: _batch_service_pb2.JobState
    error: _status_pb2.Status
    partial_failures: _containers.RepeatedCompositeFieldContainer[_status_pb2.Status]
    completion_stats: CompletionStats
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    disable_container_logging: bool
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., model: _Optional[str] = ..., model_version_id: _Optional[str] = ..., input_config: _Optional[_Union[BatchPredictionJob.InputConfig, _Mapping]] = ..., instance_config: _Optional[_Union[_batch_service_pb2.InstanceConfig, _Mapping]] = ..., model_parameters: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., output_config: _Optional[_Union[BatchPredictionJob.OutputConfig, _Mapping]] = ..., dedicated_resources: _Optional[_Union[BatchDedicatedResources, _Mapping]] = ..., service_account: _Optional[str] = ..., manual_batch_tuning_parameters: _Optional[_Union[ManualBatchTuningParameters, _Mapping]] = ..., generate_explanation: _Optional[bool] = ..., explanation_spec: _Optional[_Union[_explanation_pb2.ExplanationSpec, _Mapping]] = ..., output_info: _Optional[_Union[BatchPredictionJob.OutputInfo, _Mapping]] = ..., state: _Optional[_Union[_batch_service_pb2.JobState, str]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., partial_failures: _Optional[_Iterable[_Union[_status_pb2.Status, _Mapping]]] = ..., completion_stats: _Optional[_Union[CompletionStats, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., disable_container_logging: _Optional[bool] = ...) -> None: ...

class BatchDedicatedResources(_message.Message):
    __slots__ = ("machine_spec", "starting_replica_count", "max_replica_count")
    MACHINE_SPEC_FIELD_NUMBER: _ClassVar[int]
    STARTING_REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    machine_spec: _endpoint_service_pb2.MachineSpec
    starting_replica_count: int
    max_replica_count: int
    def __init__(self, machine_spec: _Optional[_Union[_endpoint_service_pb2.MachineSpec, _Mapping]] = ..., starting_replica_count: _Optional[int] = ..., max_replica_count: _Optional[int] = ...) -> None: ...

class GcsDestination(_message.Message):
    __slots__ = ("output_uri_prefix",)
    OUTPUT_URI_PREFIX_FIELD_NUMBER: _ClassVar[int]
    output_uri_prefix: str
    def __init__(self, output_uri_prefix: _Optional[str] = ...) -> None: ...

class ManualBatchTuningParameters(_message.Message):
    __slots__ = ("batch_size",)
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    batch_size: int
    def __init__(self, batch_size: _Optional[int] = ...) -> None: ...

class CompletionStats(_message.Message):
    __slots__ = ("successful_count", "failed_count", "incomplete_count")
    SUCCESSFUL_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_COUNT_FIELD_NUMBER: _ClassVar[int]
    successful_count: int
    failed_count: int
    incomplete_count: int
    def __init__(self, successful_count: _Optional[int] = ..., failed_count: _Optional[int] = ..., incomplete_count: _Optional[int] = ...) -> None: ...

class CreateBatchPredictionJobRequest(_message.Message):
    __slots__ = ("parent", "batch_prediction_job")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BATCH_PREDICTION_JOB_FIELD_NUMBER: _ClassVar[int]
    parent: str
    batch_prediction_job: BatchPredictionJob
    def __init__(self, parent: _Optional[str] = ..., batch_prediction_job: _Optional[_Union[BatchPredictionJob, _Mapping]] = ...) -> None: ...

class GetBatchPredictionJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListBatchPredictionJobsRequest(_message.Message):
    __slots__ = ("parent", "filter", "page_size", "page_token", "read_mask")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    READ_MASK_FIELD_NUMBER: _ClassVar[int]
    parent: str
    filter: str
    page_size: int
    page_token: str
    read_mask: _field_mask_pb2.FieldMask
    def __init__(self, parent: _Optional[str] = ..., filter: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., read_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class ListBatchPredictionJobsResponse(_message.Message):
    __slots__ = ("batch_prediction_jobs", "next_page_token")
    BATCH_PREDICTION_JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    batch_prediction_jobs: _containers.RepeatedCompositeFieldContainer[BatchPredictionJob]
    next_page_token: str
    def __init__(self, batch_prediction_jobs: _Optional[_Iterable[_Union[BatchPredictionJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelBatchPredictionJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteBatchPredictionJobRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
