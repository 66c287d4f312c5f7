"""The upload build job: runs a recipe (builds/recipes.py) and publishes its result.

The job owns the operation's side of a build: stages and progress written into
the operation record (the heartbeat other replicas watch), cancels, takeovers,
and the outcome. Any failure or cancel discards the staging folder and the
claim, so nothing is half-published, and ends the operation with an error
that names the stage and the cause.

Store outages: every store step of a build (progress and heartbeats, the
upload of its files, the model record, its ending) waits out an unreachable
store for up to the heartbeat timeout, the time other replicas wait before
they take the build for dead; after that the build fails with the store's
error. Should even its final record not get written, the housekeeping of any
replica (UploadManager.fail_stale_builds) ends the operation and frees the id.

An update (UpdateExplanationDataset) is a job with a `base_build`: its record
is the published one, which keeps serving until the job publishes the new
build; a failure discards only the update's own staging build and segment.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import tempfile
import time
import uuid
from typing import Callable

from explaind.v1 import model_pb2, model_service_pb2

from ..errors import FailedPrecondition
from ..index.meta import META_FILE, IndexMeta
from ..store.models import ModelRecord
from ..store.operations import OperationRecord
from ..store.retry import StoreUnavailable
from .operation_job import JobServices, OperationJob, StoreLost  # noqa: F401 (StoreLost re-exported)
from .recipes import BuildOptions, Recipe
from .runners.outcome import BuildOutput, IndexSummary, index_folders
from .runners.request import BuildRequest, BuildTask, Runner

log = logging.getLogger(__name__)
Stage = model_service_pb2.UploadModelOperationMetadata.Stage


def new_build_id() -> str:
    return "b" + uuid.uuid4().hex[:12]


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """The operation one job runs and what it builds: the job writes `op` and publishes `record`."""
    op: OperationRecord
    record: ModelRecord                      # an upload's claimed model; an update's published one
    recipe: Recipe
    runner: Runner                           # runs the recipe (builds/runners/); the job owns the operation
    options: BuildOptions = BuildOptions()
    build_id: str = dataclasses.field(default_factory=new_build_id)


@dataclasses.dataclass(frozen=True)
class UpdateOf:
    """An update's side of a job. `base_build`: the published build it starts from (the
    plan's record is then the published one, served until this job publishes).
    `on_published(model_id)`: after the update is published, before the operation is
    done (this replica switches at once; the others on their next poll)."""
    base_build: str
    on_published: Callable[[str], None] | None = None


class BuildJob(OperationJob):
    def __init__(self, services: JobServices, plan: BuildPlan, update: UpdateOf | None = None):
        super().__init__(services, plan.op, model_service_pb2.UploadModelOperationMetadata())
        self.plan = plan
        self.update = update
        self.models = services.models
        self.record = plan.record
        self.build_id = plan.build_id
        self.base_build = update.base_build if update is not None else ""
        self.current_stage = Stage.QUEUED
        self._stage_started = time.monotonic()
        self._publish_unknown = False                 # the model record's write may have landed

    # --- progress (the recipe's Progress) and heartbeats ---
    def stage(self, stage: int) -> None:
        metrics = self.services.metrics
        if metrics is not None and self.current_stage not in (Stage.QUEUED, Stage.STAGE_UNSPECIFIED):
            metrics.build_stage_seconds.labels(stage=Stage.Name(self.current_stage)).observe(
                time.monotonic() - self._stage_started)
        with self._record_lock:
            self.current_stage = stage
            self._stage_started = time.monotonic()
            self.meta.stage = stage
        self._beat()
        self._check()

    def examples(self, embedded: int, total: int) -> None:
        with self._record_lock:
            self.meta.examples_embedded = embedded
            self.meta.examples_total = total
            self.meta.progress_percent = 100.0 * embedded / total if total else 0.0
        self._check()

    def _where(self) -> str:
        return f"stage {Stage.Name(self.current_stage)}"

    # --- the job (OperationJob.run runs it, heart-beating) ---
    def _abandon(self) -> None:
        """Another replica ended the operation and freed the id: drop only our own staging."""
        self._best_effort("discard the staged build", self._discard_build)
        log.warning("build abandoned: its operation was ended elsewhere", extra={"operation": self.op.operation.name})

    def _discard_build(self) -> None:
        self.models.discard_build(self.record.model_id, self.build_id)

    def _run(self) -> None:
        with tempfile.TemporaryDirectory(prefix="explaind-build-") as out_dir:
            output = self.plan.runner.run(self._request(out_dir))
            self._check()
            self._publish(output, out_dir)

    def _request(self, out_dir: str) -> BuildRequest:
        """What the runner gets: the task (which may travel to a build process) and our progress and cancel."""
        plan, model_id = self.plan, self.record.model_id
        task = BuildTask(recipe=plan.recipe, model=self.record.model.SerializeToString(), options=plan.options,
                         out_dir=out_dir, build_id=self.build_id, operation=self.op.operation.name,
                         store_uri=self.models.uri, shard_prefix=self.models.shards_prefix(model_id, self.build_id))
        return BuildRequest(task, progress=self, cancel=self.cancel_event)

    def _publish(self, output: BuildOutput, out_dir: str) -> None:
        """The files the runner left in out_dir go to the build's prefix and the model's
        segments, then the record."""
        self.stage(Stage.PUBLISHING)
        record = self.record
        record.model.CopyFrom(output.model_message())     # as the recipe left it (metadata filled in)
        model = record.model
        index = output.index
        if index is not None:
            model_id = record.model_id
            files, segments = index_folders(out_dir)
            size = self._patiently(lambda: self.models.upload_build(model_id, self.build_id, files))
            self._patiently(lambda: self.models.upload_segments(model_id, segments))
            model.index_info.CopyFrom(index.index_info(size))
            record.build_id = self.build_id
            record.search_config = index.config.to_json()
            with self._record_lock:
                self.meta.recall.CopyFrom(index.recall_message())
                warnings = index.warnings()
                self.meta.warnings.extend(warnings)
            for warning in warnings:
                log.warning("build warning: %s", warning, extra={"operation": self.op.operation.name})
        self._patiently(self._sync_record)      # last look: cancelled or taken over while we built?
        self._check()
        if self.base_build:
            self._patiently(self._check_base_still_published)
        self._stop_beating.set()
        model.state = model_pb2.Model.READY
        model.update_time.GetCurrentTime()
        record.operation = self.op.operation.name
        self._publish_record(record)
        if self.base_build:
            self._finish_update(index)
        self.meta.stage = Stage.DONE
        self.meta.progress_percent = 100.0
        self.meta.update_time.GetCurrentTime()
        self.op.operation.metadata.Pack(self.meta)
        self.op.operation.response.Pack(self.plan.recipe.response(model, index))
        self.op.operation.done = True
        self._store_final()

    def _finish_update(self, index: IndexSummary | None) -> None:
        """After an update's record is written (replicas switch on their next poll): builds
        older than the one it replaced go while the update still holds the claim; then
        the claim, and this replica serves the new build at once."""
        try:
            self._patiently(lambda: self._prune(index))
        except Exception as e:  # noqa: BLE001 - garbage left behind must not fail a published update
            log.warning("pruning old builds failed: %s", e, extra={"operation": self.op.operation.name})
        # Left behind, the claim names this (then ended) operation: the next update clears it.
        self._release_own_claim()
        on_published = self.update.on_published if self.update is not None else None
        if on_published is not None:
            try:
                on_published(self.record.model_id)
            except Exception:  # noqa: BLE001 - the update is published; the poll retries the load
                log.exception("loading the updated model on this replica failed",
                              extra={"model": self.record.model.name})

    def _release_own_claim(self) -> bool:
        """Drops the model id's claim if this job's operation still holds it; False when the store failed."""
        release = functools.partial(self.models.release_own_claim, self.record.model_id, self.op.operation.name)
        return self._best_effort("release the model id", lambda: self._patiently(release))

    def _check_base_still_published(self) -> None:
        published = self.models.get_published(self.record.model_id)
        if published is None or published.build_id != self.base_build:
            raise FailedPrecondition(f"{self.record.model.name} changed while the update ran (deleted or "
                                     "replaced); nothing was published", field="model")

    def _prune(self, index: IndexSummary | None) -> None:
        """Keeps this build and the one it replaced (replicas may still be loading it)."""
        model_id = self.record.model_id
        segments = set(index.segment_names if index is not None else ())
        base_meta = self.models.read_build_file(model_id, self.base_build, META_FILE)
        if base_meta is not None:
            segments |= set(IndexMeta.parse(base_meta).segment_names)
        self.models.prune(model_id, {self.build_id, self.base_build}, segments)

    def _publish_record(self, record: ModelRecord) -> None:
        """Writes the model record. A write that failed may still have landed, its
        answer lost: the store is asked, and the files stay while it cannot say.
        An update keeps its claim: it prunes before it lets the model go."""
        self._publish_unknown = True
        try:
            self._patiently(lambda: self.models.publish(record, release=not self.base_build))
        except StoreUnavailable:
            landed = self.models.get_published(record.model_id)     # raises while the store is down
            if landed is None or landed.operation != record.operation:
                self._publish_unknown = False
                raise
            log.info("model record written; its answer was lost", extra={"operation": self.op.operation.name})
        self._publish_unknown = False

    def _fail(self, code: int, message: str, field: str | None = None, description: str = "") -> None:
        """Discards this job's staging build and claim; a published model (an
        update's base) is left exactly as it was."""
        self._stop_beating.set()
        if self.taken_over.is_set():
            self._abandon()        # the id's claim may already belong to a new upload
            return
        if self._publish_unknown:
            message += " (the model record may have been written: the build's files are kept)"
        else:
            self._best_effort("discard the staged build", self._discard_build)
        # Released before the final record is written: a failed operation leaves its id free.
        if not self._release_own_claim():
            return     # the record stays RUNNING: housekeeping frees the id and ends it
        self._end_with_error(code, message, field, description)
        log.info("build ended with an error", extra={"operation": self.op.operation.name, "error": message})
