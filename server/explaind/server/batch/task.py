"""What a batch job hands the build runners (a BatchTask, which pickles: it
travels to the build process, and with Ray to the actors) and what comes back
(a BatchOutput: counts, the kinds of row errors; the rows themselves are in
the staging folder)."""
from __future__ import annotations

import dataclasses

from explaind.v1 import explanation_pb2

from ..serving.requests import Limits
from ..store.models import ModelRecord
from .instances import InstanceShape


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """The daemon's settings a job runs under."""
    batch_size: int = 1024                  # rows per model run (and per Explain call inside the job)
    rows_per_file: int = 100_000            # rows per results or errors file
    max_failed_fraction: float = 0.1        # more failed rows than this fails the job
    limits: Limits = Limits()               # the online Explain's bounds (max_instances_per_request >= batch_size)
    use_gpu: bool | None = None
    search_threads: int = 0
    allowed_uri_prefixes: tuple[str, ...] = ()
    file_max_bytes: int = 64 << 20          # file-list: the largest file one row may be


@dataclasses.dataclass(frozen=True)
class BatchTask:
    operation: str                          # the operation's name, for logs
    record: bytes                           # the published ModelRecord the job explains with (pinned)
    store_uri: str                          # the store its build files are read from
    paths: tuple[str, ...]                  # the input files, expanded and checked
    instances_format: str
    shape: InstanceShape
    override: bytes                         # the ExplanationSpecOverride every row gets, serialized
    explained: bool                         # False: predictions only
    staging: str                            # the job's staging folder (layout.JobOutput.staging)
    options: BatchOptions = BatchOptions()

    def model_record(self) -> ModelRecord:
        return ModelRecord.from_bytes(self.record)

    def override_message(self) -> explanation_pb2.ExplanationSpecOverride:
        return explanation_pb2.ExplanationSpecOverride.FromString(self.override)

    def run_in_process(self, progress, ray=None) -> "BatchOutput":
        """In the build process (runners/child.py): the rows here, or on the Ray cluster of `ray`."""
        if ray is not None:
            from .ray_batch import run_on_ray
            return run_on_ray(self, progress, ray)
        from .run import run_batch
        return run_batch(self, progress)


@dataclasses.dataclass(frozen=True)
class ErrorKind:
    """Rows that failed alike: their status code (google.rpc.Code), the first one's
    message, and how many."""
    code: int
    message: str
    rows: int


@dataclasses.dataclass(frozen=True)
class BatchOutput:
    rows_total: int
    rows_succeeded: int
    rows_failed: int
    error_kinds: tuple[ErrorKind, ...] = ()
