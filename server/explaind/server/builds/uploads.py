"""UploadModel and UpdateExplanationDataset: validate the request (through its
recipe), claim the model id, record the operation and run the build job on a
worker thread, under the runner the model asks for; end builds whose worker
died."""
from __future__ import annotations

import concurrent.futures
import logging
import socket
import threading
import uuid
from typing import Callable

from google.longrunning import operations_pb2
from google.rpc import code_pb2, status_pb2

from explaind.v1 import model_pb2, model_service_pb2

from ..config import use_gpu
from ..errors import FailedPrecondition, NotFound, PermissionDenied, ResourceExhausted
from ..index.meta import META_FILE, IndexMeta
from ..model_ids import check_new_model_id
from ..store.models import ModelRecord, ModelStore
from ..store.operations import OperationRecord, OperationStore
from ..security import uris as allowed_uris
from .job import BuildJob, BuildPlan, UpdateOf, new_build_id
from .operation_job import JobServices, callers_copy, end_stale_operations, recordable
from .recipes import BuildOptions, Recipe, UpdateRecipe, recipe_for, update_response
from .runners import choose_runner, close_runners, make_runners

log = logging.getLogger(__name__)
Stage = model_service_pb2.UploadModelOperationMetadata.Stage


class UploadManager:
    def __init__(self, models: ModelStore, operations: OperationStore, settings, metrics=None):
        self.models = models
        self.operations = operations
        self.settings = settings
        self.worker = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.services = JobServices(models, operations, self.worker, settings.heartbeat_seconds,
                                    settings.heartbeat_timeout_seconds, metrics)
        self.runners = make_runners(settings)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.build_workers, thread_name_prefix="build")
        self._jobs: dict[str, BuildJob] = {}
        self._slots = 0                  # uploads and updates accepted or being validated, not yet ended
        self._lock = threading.Lock()
        # Told the model id once an update is published (the serving manager loads it at once).
        self.on_update_published = None

    # --- UploadModel ---
    def upload(self, request: model_service_pb2.UploadModelRequest) -> OperationRecord:
        job, answer = self._start(lambda: self._accept(request))
        log.info("upload started", extra={"model": job.record.model.name, "operation": answer.operation.name})
        return answer

    def _accept(self, request: model_service_pb2.UploadModelRequest) -> BuildJob:
        """Validates, claims the id and writes the operation: the job, not yet started."""
        model_id = self._model_id(request.model_id)
        request_json = recordable(request, "model")
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
        op = self._record_operation(op_name, model_id, request_json, model=model.name, build_runner=runner)
        return self._job(op, record, recipe, runner)

    # --- UpdateExplanationDataset ---
    def update(self, model_id: str, request: model_service_pb2.UpdateExplanationDatasetRequest) -> OperationRecord:
        """A new build of a published model from its current one; the published
        version serves until the new one replaces it, and a failure leaves it as it was."""
        job, answer = self._start(lambda: self._accept_update(model_id, request))
        log.info("update started", extra={"model": job.record.model.name, "operation": answer.operation.name,
                                          "base_build": job.base_build})
        return answer

    def _accept_update(self, model_id: str,
                       request: model_service_pb2.UpdateExplanationDatasetRequest) -> BuildJob:
        published = self.models.get_published(model_id)
        if published is None:
            raise NotFound(f"model models/{model_id[:200]} not found", field="model")
        request_json = recordable(request, "examples")
        recipe = UpdateRecipe.validated(request, published.model, published.build_id, self.models.uri,
                                        self.settings.update_max_remove_ids)
        # The model's runner label, as its upload had it (explaind.dev/build-runner), else the daemon's.
        runner = choose_runner(published.model.labels, self.settings.build_runner, self.runners)
        op_name = f"operations/{uuid.uuid4().hex}"
        build_id = new_build_id()
        # The claim names the update's operation and staging build (what housekeeping discards).
        self._claim_update(ModelRecord(model=published.model, operation=op_name, build_id=build_id))
        op = self._record_operation(op_name, model_id, request_json, model=published.model.name,
                                    base_build=published.build_id, build_runner=runner)
        record = ModelRecord(model=published.model, operation=op_name, build_id=published.build_id,
                             search_config=published.search_config)
        return self._job(op, record, recipe, runner, build_id=build_id,
                         update=UpdateOf(published.build_id, self.on_update_published))

    def _claim_update(self, claim: ModelRecord) -> None:
        """One update of a model at a time. A claim left by an update whose operation
        has ended (its release was lost to a store outage) no longer holds the model."""
        try:
            self.models.claim_update(claim)
        except FailedPrecondition:
            held = self.models.get_claim(claim.model_id)
            if held is None or not held.operation or not self._ended(held.operation):
                raise
            log.warning("claim of an ended operation removed", extra={"model": claim.model.name,
                                                                      "operation": held.operation})
            self.models.release_own_claim(claim.model_id, held.operation)
            self.models.claim_update(claim)

    def _ended(self, operation_name: str) -> bool:
        # A deleted record says nothing: DeleteOperation forgets an operation, it does not end it.
        op = self.operations.get(operation_name.partition("/")[2])
        return op is not None and op.operation.done

    # --- both ---
    def _start(self, accept: Callable[[], BuildJob]) -> tuple[BuildJob, OperationRecord]:
        """Takes an upload slot, accepts the request (`accept`) and starts its job;
        returns the job and the caller's copy of its operation (the job's own
        record changes on its thread from then on)."""
        self._take_slot()
        try:
            job = accept()
        except BaseException:
            self._release_slot()
            raise
        answer = callers_copy(job.op)
        self._pool.submit(self._run, job)
        return job, answer

    def _record_operation(self, op_name: str, model_id: str, request_json: dict, **meta_fields) -> OperationRecord:
        """The new operation's record, QUEUED; on failure the model's claim is released."""
        meta = model_service_pb2.UploadModelOperationMetadata(stage=Stage.QUEUED, worker=self.worker, **meta_fields)
        meta.create_time.GetCurrentTime()
        meta.update_time.CopyFrom(meta.create_time)
        op = OperationRecord(operation=_operation(op_name, meta), worker=self.worker, request=request_json)
        try:
            self.operations.put(op)
        except Exception:
            try:
                self.models.release_claim(model_id)
            except Exception as e:  # noqa: BLE001 - the put's error is the one to report
                log.error("claim of an operation that never started not removed: %s", e,
                          extra={"model": meta.model})
            raise
        return op

    def _job(self, op: OperationRecord, record: ModelRecord, recipe: Recipe, runner: str, build_id: str = "",
             update: UpdateOf | None = None) -> BuildJob:
        plan = BuildPlan(op, record, recipe, self.runners[runner], self._options(), build_id or new_build_id())
        job = BuildJob(self.services, plan, update)
        with self._lock:
            self._jobs[op.op_id] = job
        return job

    def _options(self) -> BuildOptions:
        return BuildOptions(embed_batch_size=self.settings.embed_batch_size,
                            stage_max_bytes=int(self.settings.stage_data_max_gb * 2**30),
                            use_gpu=use_gpu(self.settings),
                            max_examples=self.settings.max_examples_per_model,
                            max_data_bytes=int(self.settings.max_upload_data_gb * 2**30),
                            allowed_uri_prefixes=allowed_uris.policy().given,
                            retrain_added_fraction=self.settings.retrain_added_fraction)

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
            raise PermissionDenied("model uploads and updates are turned off on this server "
                                   "(--disable-model-uploads)")
        limit = self.settings.max_concurrent_uploads
        with self._lock:
            if limit and self._slots >= limit:
                raise ResourceExhausted(f"this replica already runs or queues {limit} uploads and updates "
                                        "(--max-concurrent-uploads); retry when one has finished")
            self._slots += 1

    def _release_slot(self) -> None:
        with self._lock:
            self._slots -= 1

    def _model_id(self, model_id: str) -> str:
        if not model_id:
            return "m" + uuid.uuid4().hex[:12]
        return check_new_model_id(model_id)

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
        """Ends upload and update operations whose worker stopped heart-beating (it died);
        returns how many. `operations`: a listing the caller already has (else the store is listed)."""
        return end_stale_operations(self.operations, operations, self.settings.heartbeat_timeout_seconds,
                                    self._running_here, _is_build, self._end_stale)

    def _running_here(self, op_id: str) -> bool:
        with self._lock:
            return op_id in self._jobs

    def _end_stale(self, op: OperationRecord) -> None:
        meta = model_service_pb2.UploadModelOperationMetadata()
        op.operation.metadata.Unpack(meta)
        model_id = meta.model.partition("/")[2]
        published = self.models.get_published(model_id) if model_id else None
        claim = self.models.get_claim(model_id) if model_id else None
        ours = claim is not None and claim.operation == op.operation.name
        if published is not None and published.operation == op.operation.name:
            # Published: only the final write of its operation was lost (the store failed then).
            meta.stage = Stage.DONE
            meta.progress_percent = 100.0
            op.operation.metadata.Pack(meta)
            op.operation.response.Pack(self._published_response(published, meta.base_build))
            if ours:       # an update's claim, which it drops only after pruning
                self.models.release_own_claim(model_id, op.operation.name)
        else:
            if ours:
                # The dead worker's staging is garbage: nothing of it was published. An
                # update's claim names its staging build; the published one stays.
                if meta.base_build:
                    self.models.discard_build(model_id, claim.build_id)
                else:
                    self.models.discard_all_builds(model_id)
                self.models.release_claim(model_id)
            op.operation.error.CopyFrom(status_pb2.Status(
                code=code_pb2.ABORTED,
                message=f"stage {Stage.Name(meta.stage)}: worker {op.worker} stopped sending heartbeats "
                        f"for {self.settings.heartbeat_timeout_seconds:.0f}s (it died, or could not reach "
                        f"the store); {'update' if meta.base_build else 'upload'} again"))
        op.operation.done = True
        self.operations.put(op)

    def _published_response(self, published: ModelRecord, base_build: str):
        """The response of an operation whose build was published: an upload's, or an
        update's with its counts from the build's files."""
        if not base_build:
            return model_service_pb2.UploadModelResponse(model=published.model)
        meta = self.models.read_build_file(published.model_id, published.build_id, META_FILE)
        added, removed = IndexMeta.parse(meta).last_update if meta is not None else (0, 0)
        return update_response(published.model, added, removed)

    def shutdown(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel_event.set()
        self._pool.shutdown(wait=True, cancel_futures=False)
        close_runners(self.runners)


def _is_build(op: OperationRecord) -> bool:
    return op.operation.metadata.Is(model_service_pb2.UploadModelOperationMetadata.DESCRIPTOR)


def _operation(name: str, meta) -> operations_pb2.Operation:
    op = operations_pb2.Operation(name=name, done=False)
    op.metadata.Pack(meta)
    return op
