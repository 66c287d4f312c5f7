"""The upload build job: runs a recipe (build/recipes.py) and publishes its result.

The job owns the operation's side of a build: stages and progress written into
the operation record (the heartbeat other replicas watch), cancels, takeovers,
and the outcome. Any failure or cancel discards the staging folder and the
claim, so nothing is half-published, and ends the operation with an error
that names the stage and the cause.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid

from google.rpc import code_pb2, error_details_pb2, status_pb2

from explaind.v1 import model_pb2, model_service_pb2

from ..errors import ExplaindError, FailedPrecondition
from ..index.example_index import ExampleIndex
from ..store.models import ModelRecord, ModelStore
from ..store.operations import OperationRecord, OperationStore
from .recipes import BuildOptions, Recipe

log = logging.getLogger(__name__)
Stage = model_service_pb2.UploadModelOperationMetadata.Stage


class BuildCancelled(Exception):
    pass


class BuildJob:
    def __init__(self, models: ModelStore, operations: OperationStore, op: OperationRecord,
                 record: ModelRecord, recipe: Recipe, *, worker: str, options: BuildOptions = BuildOptions(),
                 heartbeat_seconds: float = 2.0, metrics=None, build_id: str = "", base_build: str = "",
                 on_published=None):
        """`base_build`: for an update, the published build it starts from (the
        model record is then the published one, served until this job publishes).
        `on_published(model_id)`: after an update is published, before the operation
        is done (this replica switches at once; the others on their next poll)."""
        self.models = models
        self.operations = operations
        self.op = op
        self.record = record
        self.recipe = recipe
        self.worker = worker
        self.options = options
        self.heartbeat_seconds = heartbeat_seconds
        self.metrics = metrics
        self.cancel_event = threading.Event()
        # Set when another replica already ended this operation (it took our silence
        # for death): we then publish nothing and write nothing, not even the claim.
        self.taken_over = threading.Event()
        self.build_id = build_id or new_build_id()
        self.base_build = base_build
        self.on_published = on_published
        self.current_stage = Stage.QUEUED
        self._stage_started = time.monotonic()
        self._record_lock = threading.Lock()
        self._stop_beating = threading.Event()
        self.meta = model_service_pb2.UploadModelOperationMetadata()
        op.operation.metadata.Unpack(self.meta)

    # --- progress (the recipe's Progress) and heartbeats ---
    def stage(self, stage: int) -> None:
        if self.metrics is not None and self.current_stage not in (Stage.QUEUED, Stage.STAGE_UNSPECIFIED):
            self.metrics.build_stage_seconds.labels(stage=Stage.Name(self.current_stage)).observe(
                time.monotonic() - self._stage_started)
        with self._record_lock:
            self.current_stage = stage
            self._stage_started = time.monotonic()
            self.meta.stage = stage
        self._sync_record()
        self._check()

    def examples(self, embedded: int, total: int) -> None:
        with self._record_lock:
            self.meta.examples_embedded = embedded
            self.meta.examples_total = total
            self.meta.progress_percent = 100.0 * embedded / total if total else 0.0
        self._check()

    def _check(self) -> None:
        if self.cancel_event.is_set():
            raise BuildCancelled()

    def _sync_record(self) -> None:
        """Writes progress and the heartbeat; reads a cancel (or a takeover) from the store."""
        with self._record_lock:
            if self._stop_beating.is_set():
                return            # the outcome is being written; a late beat must not undo it
            stored = self.operations.get(self.op.op_id)
            if stored is None:
                return            # DeleteOperation forgets the record; it does not cancel
            if stored.operation.done:
                self.taken_over.set()
                self.cancel_event.set()
                return
            if self.operations.cancel_requested(self.op.op_id):
                self.cancel_event.set()   # a cancel asked on another replica arrives through the store
            self.meta.update_time.GetCurrentTime()
            self.meta.worker = self.worker
            self.op.operation.metadata.Pack(self.meta)
            self.op.worker = self.worker
            self.operations.put(self.op)

    def _heartbeat(self) -> None:
        # Its own thread: a long model load or index build must not look like a dead worker.
        while not self._stop_beating.wait(self.heartbeat_seconds):
            try:
                self._sync_record()
            except Exception:  # noqa: BLE001 - a missed beat is retried; the build goes on
                log.exception("heartbeat failed", extra={"operation": self.op.operation.name})

    # --- the job ---
    def run(self) -> None:
        """Never raises: the outcome is written into the operation record."""
        beat = threading.Thread(target=self._heartbeat, name=f"heartbeat-{self.op.op_id[:8]}", daemon=True)
        beat.start()
        try:
            self._run()
        except BuildCancelled:
            self._fail(code_pb2.CANCELLED, f"cancelled by CancelOperation during stage {Stage.Name(self.current_stage)}")
        except ExplaindError as e:
            self._fail(e.code.value[0], f"stage {Stage.Name(self.current_stage)}: {e}", e.field, e.message)
        except Exception as e:  # noqa: BLE001 - any failure must end the operation, not kill the worker
            log.exception("build failed", extra={"operation": self.op.operation.name})
            self._fail(code_pb2.INTERNAL, f"stage {Stage.Name(self.current_stage)}: {type(e).__name__}: {e}")
        finally:
            self._stop_beating.set()
            beat.join()

    def _abandon(self) -> None:
        """Another replica ended the operation and freed the id: drop only our own staging."""
        self.models.discard_build(self.record.model_id, self.build_id)
        log.warning("build abandoned: its operation was ended elsewhere", extra={"operation": self.op.operation.name})

    def _run(self) -> None:
        index = self.recipe.build(self.record.model, self, self.options)
        self._check()
        self._publish(index)

    def _publish(self, index: ExampleIndex | None) -> None:
        self.stage(Stage.PUBLISHING)
        record = self.record
        model = record.model
        if index is not None:
            model_id = record.model_id
            with tempfile.TemporaryDirectory(prefix="explaind-build-") as tmp:
                files, segments = os.path.join(tmp, "index"), os.path.join(tmp, "segments")
                os.makedirs(files)
                os.makedirs(segments)
                index.save(files, segments, segment_name=self.build_id)
                size = self.models.objects.upload_dir(files, self.models.build_prefix(model_id, self.build_id))
                self.models.objects.upload_dir(segments, self.models.segments_prefix(model_id))
            model.index_info.CopyFrom(_index_info(index, size, self.options))
            record.build_id = self.build_id
            record.search_config = index.config.to_json()
        self._sync_record()      # last look: cancelled or taken over while we built?
        self._check()
        if self.base_build:
            self._check_base_still_published()
        self._stop_beating.set()
        model.state = model_pb2.Model.READY
        model.update_time.GetCurrentTime()
        record.operation = self.op.operation.name
        if self.base_build:
            # The record is replaced at once (replicas switch on their next poll); builds
            # older than the one it replaces go while this update still holds the claim.
            self.models.publish(record, release=False)
            try:
                self._prune(index)
            except Exception:  # noqa: BLE001 - garbage left behind must not fail a published update
                log.exception("pruning old builds failed", extra={"model": model.name})
            self.models.release_claim(record.model_id)
            self._switch_here()
        else:
            self.models.publish(record)
        self.meta.stage = Stage.DONE
        self.meta.progress_percent = 100.0
        self.meta.update_time.GetCurrentTime()
        self.op.operation.metadata.Pack(self.meta)
        self.op.operation.response.Pack(self.recipe.response(model, index, self.options))
        self.op.operation.done = True
        self._store_final()

    def _switch_here(self) -> None:
        if self.on_published is None:
            return
        try:
            self.on_published(self.record.model_id)
        except Exception:  # noqa: BLE001 - the update is published; the poll retries the load
            log.exception("loading the updated model on this replica failed", extra={"model": self.record.model.name})

    def _check_base_still_published(self) -> None:
        published = self.models.get_published(self.record.model_id)
        if published is None or published.build_id != self.base_build:
            raise FailedPrecondition(f"{self.record.model.name} changed while the update ran (deleted or "
                                     "replaced); nothing was published", field="model")

    def _prune(self, index: ExampleIndex | None) -> None:
        """Keeps this build and the one it replaced (replicas may still be loading it)."""
        model_id = self.record.model_id
        keep = {self.build_id, self.base_build}
        segments = set(index.segment_names if index is not None else ())
        base_meta = self.models.objects.read(f"{self.models.build_prefix(model_id, self.base_build)}/meta.json")
        if base_meta is not None:
            segments |= {s["name"] for s in json.loads(base_meta).get("segments", [])}
        self.models.prune(model_id, keep, segments)

    def _fail(self, code: int, message: str, field: str | None = None, description: str = "") -> None:
        """Discards this job's staging build and claim; a published model (an
        update's base) is left exactly as it was."""
        self._stop_beating.set()
        if self.taken_over.is_set():
            self._abandon()        # the id's claim may already belong to a new upload
            return
        try:
            self.models.discard_build(self.record.model_id, self.build_id)
        finally:
            self.models.release_claim(self.record.model_id)
        status = status_pb2.Status(code=code, message=message)
        if field:
            detail = error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description or message)])
            status.details.add().Pack(detail)
        self.meta.update_time.GetCurrentTime()
        self.op.operation.metadata.Pack(self.meta)
        self.op.operation.error.CopyFrom(status)
        self.op.operation.done = True
        self._store_final()
        log.info("build ended with an error", extra={"operation": self.op.operation.name, "error": message})

    def _store_final(self) -> None:
        with self._record_lock:
            stored = self.operations.get(self.op.op_id)
            # A DeleteOperation during the build forgets the record: do not resurrect it.
            if stored is not None:
                self.operations.put(self.op)



def new_build_id() -> str:
    return "b" + uuid.uuid4().hex[:12]


def _index_info(index: ExampleIndex, stored_bytes: int, options: BuildOptions) -> model_pb2.IndexInfo:
    info, config = index.info, index.config
    return model_pb2.IndexInfo(
        example_count=index.live_count, dimensions=index.dimensions, index_type=info.index_type,
        index_bytes=info.index_bytes or stored_bytes, device=info.device, distance_measure_type=config.distance,
        feature_norm_type=config.feature_norm, nlist=info.nlist, nprobe=info.nprobe,
        mapped_bytes=info.mapped_bytes,
        examples_added_since_training=index.lineage.added if index.kind == "ivf_pq" else 0,
        retrain_recommended=index.retrain_due(options.retrain_added_fraction))
