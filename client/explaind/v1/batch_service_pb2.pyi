import datetime

from google.longrunning import operations_pb2 as _operations_pb2
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

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_PENDING: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLING: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
    JOB_STATE_PAUSED: _ClassVar[JobState]
    JOB_STATE_EXPIRED: _ClassVar[JobState]
    JOB_STATE_UPDATING: _ClassVar[JobState]
    JOB_STATE_PARTIALLY_SUCCEEDED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_PENDING: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLING: JobState
JOB_STATE_CANCELLED: JobState
JOB_STATE_PAUSED: JobState
JOB_STATE_EXPIRED: JobState
JOB_STATE_UPDATING: JobState
JOB_STATE_PARTIALLY_SUCCEEDED: JobState

class BatchExplainRequest(_message.Message):
    __slots__ = ("model", "uris", "instances_format", "output_uri_prefix", "explanation_spec_override", "display_name", "labels", "max_failed_fraction", "batch_size", "predictions_only", "instance_config")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    URIS_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_URI_PREFIX_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_SPEC_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_ONLY_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    model: str
    uris: _containers.RepeatedScalarFieldContainer[str]
    instances_format: str
    output_uri_prefix: str
    explanation_spec_override: _explanation_pb2.ExplanationSpecOverride
    display_name: str
    labels: _containers.ScalarMap[str, str]
    max_failed_fraction: float
    batch_size: int
    predictions_only: bool
    instance_config: InstanceConfig
    def __init__(self, model: _Optional[str] = ..., uris: _Optional[_Iterable[str]] = ..., instances_format: _Optional[str] = ..., output_uri_prefix: _Optional[str] = ..., explanation_spec_override: _Optional[_Union[_explanation_pb2.ExplanationSpecOverride, _Mapping]] = ..., display_name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., max_failed_fraction: _Optional[float] = ..., batch_size: _Optional[int] = ..., predictions_only: _Optional[bool] = ..., instance_config: _Optional[_Union[InstanceConfig, _Mapping]] = ...) -> None: ...

class InstanceConfig(_message.Message):
    __slots__ = ("instance_type", "key_field", "included_fields", "excluded_fields")
    INSTANCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    instance_type: str
    key_field: str
    included_fields: _containers.RepeatedScalarFieldContainer[str]
    excluded_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instance_type: _Optional[str] = ..., key_field: _Optional[str] = ..., included_fields: _Optional[_Iterable[str]] = ..., excluded_fields: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchExplainOperationMetadata(_message.Message):
    __slots__ = ("state", "create_time", "start_time", "end_time", "update_time", "model", "build", "rows_total", "rows_succeeded", "rows_failed", "progress_percent", "output_directory", "worker", "runner", "partial_failures")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    ROWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROWS_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    ROWS_FAILED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    RUNNER_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    model: str
    build: str
    rows_total: int
    rows_succeeded: int
    rows_failed: int
    progress_percent: float
    output_directory: str
    worker: str
    runner: str
    partial_failures: _containers.RepeatedCompositeFieldContainer[_status_pb2.Status]
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., model: _Optional[str] = ..., build: _Optional[str] = ..., rows_total: _Optional[int] = ..., rows_succeeded: _Optional[int] = ..., rows_failed: _Optional[int] = ..., progress_percent: _Optional[float] = ..., output_directory: _Optional[str] = ..., worker: _Optional[str] = ..., runner: _Optional[str] = ..., partial_failures: _Optional[_Iterable[_Union[_status_pb2.Status, _Mapping]]] = ...) -> None: ...

class BatchExplainResponse(_message.Message):
    __slots__ = ("output_directory", "rows_succeeded", "rows_failed", "result_files", "error_files")
    OUTPUT_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    ROWS_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    ROWS_FAILED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FILES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FILES_FIELD_NUMBER: _ClassVar[int]
    output_directory: str
    rows_succeeded: int
    rows_failed: int
    result_files: _containers.RepeatedScalarFieldContainer[str]
    error_files: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, output_directory: _Optional[str] = ..., rows_succeeded: _Optional[int] = ..., rows_failed: _Optional[int] = ..., result_files: _Optional[_Iterable[str]] = ..., error_files: _Optional[_Iterable[str]] = ...) -> None: ...
