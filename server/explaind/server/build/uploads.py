"""UploadModel: validates the request (through its recipe), claims the model
id, records the operation and runs the build job on a worker thread; ends
builds whose worker died."""
from __future__ import annotations

import concurrent.futures
import logging
import re
import socket
import threading
import time
import uuid

from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from explaind.v1 import model_pb2, model_service_pb2

from ..config import use_gpu
from ..errors import InvalidArgument, PermissionDenied, ResourceExhausted
from ..store.models import ModelRecord, ModelStore
from ..store.operations import OperationRecord, OperationStore
from ..security import uris as allowed_uris
from .job import BuildJob
from .recipes import BuildOptions, recipe_for
from .runners import choose_runner, close_runners, make_runners

log = logging.getLogger(__name__)
MODEL_ID = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
Stage = model_service_pb2.UploadModelOperationMetadata.Stage


class UploadManager:
    def __init__(self, models: ModelStore, operations: OperationStore, settings, metrics=None):
        self.models = models
        self.operations = operations
        self.settings = settings
        self.metrics = metrics
        self.worker = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.runners = make_runners(settings)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.build_workers, thread_name_prefix="build")
        self._jobs: dict[str, BuildJob] = {}
        self._slots = 0                  # uploads accepted or being validated, not yet ended
        self._lock = threading.Lock()

    # --- UploadModel ---
    def upload(self, request: model_service_pb2.UploadModelRequest) -> OperationRecord:
        self._take_slot()
        try:
            op, job = self._accept(request)
        except BaseException:
            self._release_slot()
            raise
        self._pool.submit(self._run, job)
        log.info("upload started", extra={"model": job.record.model.name, "operation": op.operation.name})
        return op

    def _accept(self, request: model_service_pb2.UploadModelRequest) -> tuple[OperationRecord, BuildJob]:
        """Validates, claims the id and writes the operation: the job, not yet started."""
        model_id = self._model_id(request.model_id)
        request_json = _recordable(request)
        model = model_pb2.Model()
        model.CopyFrom(request.model)
        recipe = recipe_for(model, self.settings.max_neighbor_count)
        runner = choose_runner(model.labels, self.settings.build_runner, self.runners)
        model.name = f"models/{model_id}"
        model.state = model_pb2.Model.BUILDING
        model.create_time.GetCurrentTime()
        model.update_time.CopyFrom(model.create_time)
        model.ClearField("index_info")

        op_name = f"operations/{uuid.uuid4().hex}"
        record = ModelRecord(model=model, operation=op_name)
        self.models.claim(record)
        meta = model_service_pb2.UploadModelOperationMetadata(
            stage=Stage.QUEUED, model=model.name, worker=self.worker, build_runner=runner)
        meta.create_time.GetCurrentTime()
        meta.update_time.CopyFrom(meta.create_time)
        op = OperationRecord(operation=_operation(op_name, meta), worker=self.worker, request=request_json)
        try:
            self.operations.put(op)
        except Exception:
            try:
                self.models.release_claim(model_id)
            except Exception as e:  # noqa: BLE001 - the put's error is the one to report
                log.error("claim of an upload that never started not removed: %s", e, extra={"model": model.name})
            raise
        options = BuildOptions(embed_batch_size=self.settings.embed_batch_size,
                               stage_max_bytes=int(self.settings.stage_data_max_gb * 2**30),
                               use_gpu=use_gpu(self.settings),
                               max_examples=self.settings.max_examples_per_model,
                               max_data_bytes=int(self.settings.max_upload_data_gb * 2**30),
                               allowed_uri_prefixes=allowed_uris.policy().given)
        job = BuildJob(self.models, self.operations, op, record, recipe, worker=self.worker, options=options,
                       heartbeat_seconds=self.settings.heartbeat_seconds,
                       heartbeat_timeout_seconds=self.settings.heartbeat_timeout_seconds, metrics=self.metrics,
                       runner=self.runners[runner])
        with self._lock:
            self._jobs[op.op_id] = job
        return op, job

    def _run(self, job: BuildJob) -> None:
        try:
            job.run()
        finally:
            with self._lock:
                self._jobs.pop(job.op.op_id, None)
            self._release_slot()

    def _take_slot(self) -> None:
        """One of --max-concurrent-uploads, held from the request until its build ends."""
        if self.settings.disable_model_uploads:
            raise PermissionDenied("model uploads are turned off on this server (--disable-model-uploads)")
        limit = self.settings.max_concurrent_uploads
        with self._lock:
            if limit and self._slots >= limit:
                raise ResourceExhausted(f"this replica already runs or queues {limit} uploads "
                                        "(--max-concurrent-uploads); retry when one has finished")
            self._slots += 1

    def _release_slot(self) -> None:
        with self._lock:
            self._slots -= 1

    def _model_id(self, model_id: str) -> str:
        if not model_id:
            return "m" + uuid.uuid4().hex[:12]
        if not MODEL_ID.fullmatch(model_id):
            raise InvalidArgument(
                f"{model_id!r} is not a valid model id: at most 63 of [a-z0-9_-], "
                "not starting with a digit or hyphen", field="model_id")
        return model_id

    # --- operations ---
    def cancel(self, op: OperationRecord) -> None:
        """Best effort: the running job stops at its next progress point. The record
        itself is left to the job (here or on another replica), which reads the marker."""
        if op.operation.done:
            return
        self.operations.request_cancel(op.op_id)
        with self._lock:
            job = self._jobs.get(op.op_id)
        if job is not None:
            job.cancel_event.set()

    def fail_stale_builds(self, operations: list[OperationRecord] | None = None) -> int:
        """Ends operations whose worker stopped heart-beating (it died); returns how many.
        `operations`: a listing the caller already has (else the store is listed)."""
        deadline = time.time() - self.settings.heartbeat_timeout_seconds
        failed = 0
        for op in self.operations.list() if operations is None else operations:
            if op.operation.done or op.heartbeat > deadline:
                continue
            with self._lock:
                if op.op_id in self._jobs:
                    continue
            op = self.operations.get(op.op_id)    # a listing may be stale: the build may just have ended
            if op is None or op.operation.done or op.heartbeat > deadline:
                continue
            meta = model_service_pb2.UploadModelOperationMetadata()
            op.operation.metadata.Unpack(meta)
            model_id = meta.model.partition("/")[2]
            record = self.models.get(model_id) if model_id else None
            ours = record is not None and record.operation == op.operation.name
            if ours and record.model.state == model_pb2.Model.READY:
                # Published: only the final write of its operation was lost (the store failed then).
                meta.stage = Stage.DONE
                meta.progress_percent = 100.0
                op.operation.metadata.Pack(meta)
                op.operation.response.Pack(model_service_pb2.UploadModelResponse(model=record.model))
            else:
                if ours and record.model.state == model_pb2.Model.BUILDING:
                    # The dead worker's staging folder is garbage: nothing of it was published.
                    self.models.discard_all_builds(model_id)
                    self.models.release_claim(model_id)
                op.operation.error.CopyFrom(status_pb2.Status(
                    code=code_pb2.ABORTED,
                    message=f"stage {Stage.Name(meta.stage)}: worker {op.worker} stopped sending heartbeats "
                            f"for {self.settings.heartbeat_timeout_seconds:.0f}s (it died, or could not reach "
                            "the store); upload again"))
            op.operation.done = True
            self.operations.put(op)
            failed += 1
        return failed

    def running_count(self) -> int:
        with self._lock:
            return len(self._jobs)

    def shutdown(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel_event.set()
        self._pool.shutdown(wait=True, cancel_futures=False)
        close_runners(self.runners)


def _recordable(request) -> dict:
    """The request as the JSON the operation record keeps. A message can hold what JSON
    cannot (NaN or infinity in a Value, a Timestamp out of range): refused, not recorded."""
    try:
        return json_format.MessageToDict(request)
    except (json_format.SerializeToJsonError, ValueError) as e:
        raise InvalidArgument(f"cannot be recorded: {e}", field="model") from None


def _operation(name: str, meta) -> operations_pb2.Operation:
    op = operations_pb2.Operation(name=name, done=False)
    op.metadata.Pack(meta)
    return op

