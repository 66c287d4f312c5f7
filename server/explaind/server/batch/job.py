"""A batch job's side of its operation (OperationJob: heartbeats, cancels,
takeovers): it hands its task to a build runner, keeps the row counts and the
state in the operation's metadata while the rows run, and then publishes the
staged output (layout.JobOutput) or, failed or cancelled, removes it.

States (Vertex AI's JobState): QUEUED until a batch worker takes the job,
PENDING while its process starts, loads the model and counts the rows,
RUNNING once the rows flow, CANCELLING once a cancel is asked, then
SUCCEEDED, FAILED or CANCELLED.
"""
from __future__ import annotations

import dataclasses
import logging

from google.rpc import code_pb2, status_pb2

from explaind.v1 import batch_service_pb2

from ..builds.operation_job import JobServices, OperationJob
from ..builds.runners.request import BuildRequest, Runner
from .layout import JobOutput
from .task import BatchOutput, BatchTask

log = logging.getLogger(__name__)
State = batch_service_pb2.JobState
ENDED = (State.JOB_STATE_SUCCEEDED, State.JOB_STATE_FAILED, State.JOB_STATE_CANCELLED)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    op: object                  # store.operations.OperationRecord
    task: BatchTask
    output: JobOutput
    runner: Runner


class BatchJob(OperationJob):
    def __init__(self, services: JobServices, plan: BatchPlan):
        super().__init__(services, plan.op, batch_service_pb2.BatchExplainOperationMetadata())
        self.plan = plan

    # --- the runner's progress ---
    def stage(self, stage: int) -> None:
        self._check()

    def examples(self, embedded: int, total: int) -> None:
        self._check()

    def rows(self, done: int, failed: int, total: int) -> None:
        with self._record_lock:
            if self.meta.state in (State.JOB_STATE_PENDING, State.JOB_STATE_QUEUED):
                self.meta.state = State.JOB_STATE_RUNNING
            self.meta.rows_total = total
            self.meta.rows_succeeded = done - failed
            self.meta.rows_failed = failed
            self.meta.progress_percent = 100.0 * done / total if total else 0.0
        self._check()

    def _where(self) -> str:
        return "reading the rows" if self.meta.state == State.JOB_STATE_RUNNING else "starting"

    def _stamp(self) -> None:
        super()._stamp()
        if self.cancel_event.is_set() and self.meta.state not in ENDED:
            self.meta.state = State.JOB_STATE_CANCELLING

    # --- the job ---
    def _run(self) -> None:
        with self._record_lock:
            self.meta.state = State.JOB_STATE_PENDING
            self.meta.start_time.GetCurrentTime()
        self._beat()
        self._check()
        output = self.plan.runner.run(BuildRequest(self.plan.task, progress=self, cancel=self.cancel_event))
        self._patiently(self._sync_record)      # last look: cancelled or taken over meanwhile?
        self._check()
        self._publish(output)

    def _publish(self, output: BatchOutput) -> None:
        results, errors = self.plan.output.publish(self.plan.task.explained)
        self._stop_beating.set()
        meta = self.meta
        self._count(output)
        meta.state = State.JOB_STATE_SUCCEEDED
        meta.progress_percent = 100.0
        meta.end_time.GetCurrentTime()
        meta.update_time.CopyFrom(meta.end_time)
        self.op.operation.metadata.Pack(meta)
        self.op.operation.response.Pack(batch_service_pb2.BatchExplainResponse(
            output_directory=meta.output_directory, rows_succeeded=output.rows_succeeded,
            rows_failed=output.rows_failed, result_files=results, error_files=errors))
        self.op.operation.done = True
        self._store_final()
        log.info("batch job done", extra={"operation": self.op.operation.name, "rows": output.rows_total,
                                          "failed": output.rows_failed, "output": meta.output_directory})

    def _count(self, output: BatchOutput) -> None:
        meta = self.meta
        meta.rows_total = output.rows_total
        meta.rows_succeeded = output.rows_succeeded
        meta.rows_failed = output.rows_failed
        del meta.partial_failures[:]
        for kind in output.error_kinds:
            meta.partial_failures.append(status_pb2.Status(
                code=kind.code, message=f"{kind.rows} row{'s' if kind.rows != 1 else ''}: {kind.message}"))

    def _fail(self, code: int, message: str, field: str | None = None, description: str = "") -> None:
        """Removes the staged output: a job that does not complete leaves nothing behind."""
        self._stop_beating.set()
        self._best_effort("remove the staged output", self.plan.output.discard)
        if self.taken_over.is_set():
            log.warning("batch job abandoned: its operation was ended elsewhere",
                        extra={"operation": self.op.operation.name})
            return
        self.meta.state = State.JOB_STATE_CANCELLED if code == code_pb2.CANCELLED else State.JOB_STATE_FAILED
        self.meta.end_time.GetCurrentTime()
        self._end_with_error(code, message, field, description)
        log.info("batch job ended with an error", extra={"operation": self.op.operation.name, "error": message})
