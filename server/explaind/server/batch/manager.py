"""Batch jobs on one replica: create (check the request, write the operation,
queue the job on a batch worker), cancel, and end the jobs of replicas that
died. A job runs on the replica's build runners (the local runner's process,
or Ray), never in the serving process; its operation lives with the
uploads' in the store (operations/{id}.json), so the Operations API and
every replica's housekeeping see it.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import logging
import threading
import uuid

from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from explaind.v1 import batch_service_pb2

from ..builds.operation_job import JobServices, callers_copy, end_stale_operations, recordable
from ..builds.runners import LOCAL, THREAD, choose_runner
from ..config import use_gpu
from ..errors import ExplaindError, FailedPrecondition, PermissionDenied, ResourceExhausted
from ..serving.requests import Limits
from ..store.operations import OperationRecord
from ..security import uris as allowed_uris
from .job import BatchJob, BatchPlan, State
from .layout import JobOutput, job_folder_name
from .spec import JobSpec, read_request
from .task import BatchOptions, BatchTask

log = logging.getLogger(__name__)
REQUEST_KEY = "batchExplain"        # the request, as the operation record keeps it
VERTEX_KEY = "vertexJob"            # a Vertex create's own fields, for its answers (vertex/jobs.py)


def is_batch(op: OperationRecord | operations_pb2.Operation) -> bool:
    operation = op.operation if isinstance(op, OperationRecord) else op
    return operation.metadata.Is(batch_service_pb2.BatchExplainOperationMetadata.DESCRIPTOR)


def metadata_of(operation: operations_pb2.Operation) -> batch_service_pb2.BatchExplainOperationMetadata:
    meta = batch_service_pb2.BatchExplainOperationMetadata()
    operation.metadata.Unpack(meta)
    return meta


def request_of(record: OperationRecord) -> batch_service_pb2.BatchExplainRequest:
    return json_format.ParseDict(record.request.get(REQUEST_KEY, {}), batch_service_pb2.BatchExplainRequest(),
                                 ignore_unknown_fields=True)


def output_of(record: OperationRecord) -> JobOutput:
    """The job's output folders, from its record (for housekeeping on any replica)."""
    folder = metadata_of(record.operation).output_directory
    prefix, _, name = folder.rpartition("/")
    return JobOutput(prefix, record.op_id, name)


class BatchManager:
    def __init__(self, services: JobServices, runners: dict, settings, metrics=None):
        self.services = services
        self.models = services.models
        self.operations = services.operations
        self.runners = runners
        self.settings = settings
        self.metrics = metrics
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, settings.batch_workers),
                                                           thread_name_prefix="batch")
        self._jobs: dict[str, BatchJob] = {}
        self._lock = threading.Lock()

    # --- create ---
    def create(self, request: batch_service_pb2.BatchExplainRequest, vertex_job: dict | None = None
               ) -> OperationRecord:
        """Checks the request, writes the job's operation (QUEUED) and queues it; the record."""
        if self.settings.disable_model_uploads:
            raise PermissionDenied("batch jobs are turned off on this read-only server (--disable-model-uploads)")
        spec = read_request(request, self.models, self._limits(), self.settings.batch_max_failed_fraction,
                            self.settings.batch_size, self.settings.max_message_bytes)
        try:
            # Never in the serving process: a daemon that builds on a thread runs jobs in a build process.
            runner = choose_runner(request.labels, LOCAL if self.settings.build_runner == THREAD
                                   else self.settings.build_runner, self.runners)
        except ExplaindError as e:
            e.field = (e.field or "").removeprefix("model.")      # the job's labels, not a model's
            raise
        request_json = recordable(request, "explanation_spec_override")
        with self._lock:
            if len(self._jobs) >= self.settings.max_concurrent_batch_jobs:
                raise ResourceExhausted(f"this replica already runs or queues {len(self._jobs)} batch jobs "
                                        "(--max-concurrent-batch-jobs); retry when one has finished")
            op_id = uuid.uuid4().hex
            self._jobs[op_id] = None                  # the slot, until the job is made below
        try:
            record, job = self._start(op_id, spec, runner, request_json, vertex_job)
        except BaseException:
            with self._lock:
                self._jobs.pop(op_id, None)
            raise
        log.info("batch job created", extra={"operation": record.operation.name, "model": spec.record.model.name,
                                             "files": len(spec.files.paths), "runner": runner})
        return record

    def _start(self, op_id: str, spec: JobSpec, runner: str, request_json: dict, vertex_job: dict | None):
        meta = batch_service_pb2.BatchExplainOperationMetadata(
            state=State.JOB_STATE_QUEUED, model=spec.record.model.name, build=spec.record.build_id,
            worker=self.services.worker, runner=runner)
        meta.create_time.GetCurrentTime()
        meta.update_time.CopyFrom(meta.create_time)
        output = JobOutput(spec.output_prefix, op_id, job_folder_name(
            spec.record.model.display_name or spec.record.model_id, meta.create_time.ToDatetime(datetime.timezone.utc)))
        meta.output_directory = output.folder
        operation = operations_pb2.Operation(name=f"operations/{op_id}")
        operation.metadata.Pack(meta)
        request = {REQUEST_KEY: request_json}
        if vertex_job is not None:
            request[VERTEX_KEY] = vertex_job
        record = OperationRecord(operation=operation, request=request, worker=self.services.worker)
        task = BatchTask(operation=operation.name, record=spec.record.to_bytes(), store_uri=self.models.uri,
                         paths=spec.files.paths, instances_format=spec.files.instances_format, shape=spec.shape,
                         override=spec.override.SerializeToString(), explained=spec.explained,
                         staging=output.staging, options=self._options(spec))
        job = BatchJob(self.services, BatchPlan(record, task, output, self.runners[runner]))
        self.operations.put(record)
        answer = callers_copy(record)      # the job's own record changes on its thread from now on
        with self._lock:
            self._jobs[op_id] = job
        self._pool.submit(self._run, job)
        return answer, job

    def _run(self, job: BatchJob) -> None:
        try:
            job.run()
        finally:
            with self._lock:
                self._jobs.pop(job.op.op_id, None)

    def _limits(self) -> Limits:
        return Limits.of(self.settings)

    def _options(self, spec: JobSpec) -> BatchOptions:
        limits = dataclasses.replace(self._limits(), max_instances_per_request=spec.batch_size)
        return BatchOptions(batch_size=spec.batch_size, rows_per_file=self.settings.batch_rows_per_file,
                            max_failed_fraction=spec.max_failed_fraction, limits=limits,
                            use_gpu=use_gpu(self.settings), search_threads=self.settings.search_threads,
                            allowed_uri_prefixes=allowed_uris.policy().given,
                            file_max_bytes=self.settings.max_message_bytes)

    # --- cancel ---
    def cancel(self, record: OperationRecord) -> None:
        """The job stops at its next batch (here, or on the replica running it, through the
        store's marker); Vertex refuses to cancel an ended job, and so does this."""
        if record.operation.done:
            state = batch_service_pb2.JobState.Name(metadata_of(record.operation).state)
            raise FailedPrecondition(f"the job has ended ({state}): nothing to cancel", field="name")
        self.operations.request_cancel(record.op_id)
        with self._lock:
            job = self._jobs.get(record.op_id)
        if job is not None:
            job.cancel_event.set()

    def delete(self, record: OperationRecord) -> None:
        """Forgets an ended job (its output stays where it was published)."""
        if not record.operation.done:
            raise FailedPrecondition("the job is still running: cancel it first", field="name")
        self.operations.delete(record.op_id)

    # --- housekeeping ---
    def fail_stale_jobs(self, operations: list[OperationRecord] | None = None) -> int:
        """Ends the jobs whose worker stopped heart-beating (it died): FAILED, the counts they
        reached kept, their staged output removed. Returns how many."""
        return end_stale_operations(self.operations, operations, self.settings.heartbeat_timeout_seconds,
                                    self._running_here, is_batch, self._end_stale)

    def _running_here(self, op_id: str) -> bool:
        with self._lock:
            return op_id in self._jobs

    def _end_stale(self, op: OperationRecord) -> None:
        meta = metadata_of(op.operation)
        try:
            output_of(op).discard()
        except Exception as e:  # noqa: BLE001 - the job ends anyway; the staging folder is garbage
            log.error("staged output of a dead job not removed: %s", e, extra={"operation": op.operation.name})
        cancelled = self.operations.cancel_requested(op.op_id)
        meta.state = State.JOB_STATE_CANCELLED if cancelled else State.JOB_STATE_FAILED
        meta.end_time.GetCurrentTime()
        meta.update_time.CopyFrom(meta.end_time)
        op.operation.metadata.Pack(meta)
        op.operation.error.CopyFrom(status_pb2.Status(
            code=code_pb2.CANCELLED if cancelled else code_pb2.ABORTED,
            message=f"worker {op.worker} stopped sending heartbeats for {self.settings.heartbeat_timeout_seconds:.0f}s "
                    f"(it died, or could not reach the store) after {meta.rows_succeeded + meta.rows_failed} of "
                    f"{meta.rows_total} rows; nothing was published: run the job again"))
        op.operation.done = True
        self.operations.put(op)
        log.warning("batch job of a dead worker ended", extra={"operation": op.operation.name})

    def shutdown(self) -> None:
        with self._lock:
            jobs = [job for job in self._jobs.values() if job is not None]
        for job in jobs:
            job.cancel_event.set()
        self._pool.shutdown(wait=True, cancel_futures=False)
