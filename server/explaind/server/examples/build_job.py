"""The upload build job: examples -> embeddings -> index -> published model.

Runs in a worker thread. Every stage writes its progress into the operation
record (the heartbeat other replicas watch); any failure or cancel discards
the staging folder and the claim, so nothing is half-published, and ends the
operation with an error that names the stage and the cause.
"""
from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
import uuid

import numpy as np
from google.rpc import code_pb2, error_details_pb2, status_pb2

from explaind.v1 import model_pb2, model_service_pb2

from ..errors import ExplaindError, InvalidArgument
from ..index.config import SearchConfig
from ..index.example_index import ExampleIndex
from ..index.restricts import parse_restricts
from ..runtime.instances import ShapeMismatch, batch_inputs
from ..store.models import ModelRecord, ModelStore
from ..store.operations import OperationRecord, OperationStore
from . import readers
from .matrix import EmbeddingMatrix
from .source import DataSource
from .staging import staged_locally

log = logging.getLogger(__name__)
Stage = model_service_pb2.UploadModelOperationMetadata.Stage
EXAMPLES_FIELD = "model.explanation_spec.parameters.examples"


class BuildCancelled(Exception):
    pass


class BuildJob:
    def __init__(self, models: ModelStore, operations: OperationStore, op: OperationRecord,
                 record: ModelRecord, search_config: SearchConfig | None, source: DataSource | None,
                 *, worker: str, embed_batch_size: int = 256, heartbeat_seconds: float = 2.0,
                 stage_max_bytes: int = 0,
                 use_gpu: bool | None = None, metrics=None):
        self.models = models
        self.operations = operations
        self.op = op
        self.record = record
        self.search_config = search_config
        self.source = source
        self.worker = worker
        self.embed_batch_size = embed_batch_size
        self.stage_max_bytes = stage_max_bytes
        self.heartbeat_seconds = heartbeat_seconds
        self.use_gpu = use_gpu
        self.metrics = metrics
        self.cancel_event = threading.Event()
        # Set when another replica already ended this operation (it took our silence
        # for death): we then publish nothing and write nothing, not even the claim.
        self.taken_over = threading.Event()
        self.build_id = "b" + uuid.uuid4().hex[:12]
        self.stage = Stage.QUEUED
        self._stage_started = time.monotonic()
        self._record_lock = threading.Lock()
        self._stop_beating = threading.Event()
        self.meta = model_service_pb2.UploadModelOperationMetadata()
        op.operation.metadata.Unpack(self.meta)

    # --- progress and heartbeats ---
    def _set_stage(self, stage: int) -> None:
        if self.metrics is not None and self.stage not in (Stage.QUEUED, Stage.STAGE_UNSPECIFIED):
            self.metrics.build_stage_seconds.labels(stage=Stage.Name(self.stage)).observe(
                time.monotonic() - self._stage_started)
        with self._record_lock:
            self.stage = stage
            self._stage_started = time.monotonic()
            self.meta.stage = stage
        self._sync_record()
        self._check()

    def _progress(self, embedded: int, total: int) -> None:
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
            self._fail(code_pb2.CANCELLED, f"cancelled by CancelOperation during stage {Stage.Name(self.stage)}")
        except ExplaindError as e:
            self._fail(e.code.value[0], f"stage {Stage.Name(self.stage)}: {e}", e.field, e.message)
        except Exception as e:  # noqa: BLE001 - any failure must end the operation, not kill the worker
            log.exception("build failed", extra={"operation": self.op.operation.name})
            self._fail(code_pb2.INTERNAL, f"stage {Stage.Name(self.stage)}: {type(e).__name__}: {e}")
        finally:
            self._stop_beating.set()
            beat.join()

    def _abandon(self) -> None:
        """Another replica ended the operation and freed the id: drop only our own staging."""
        self.models.discard_build(self.record.model_id, self.build_id)
        log.warning("build abandoned: its operation was ended elsewhere", extra={"operation": self.op.operation.name})

    def _run(self) -> None:
        from ..runtime.saved_model import LatentModel  # TensorFlow loads only when a build needs it

        model = self.record.model
        self._set_stage(Stage.LOADING_MODEL)
        if model.artifact_uri and not model.explanation_spec.HasField("metadata"):
            # As in Vertex AI: without metadata in the request, the file beside the model counts.
            from ..attributions.metadata import load_metadata_for_model
            found = load_metadata_for_model(model.artifact_uri)
            if found is not None:
                model.explanation_spec.metadata.CopyFrom(found)
        if self.search_config is None:
            # A feature-attribution model: loading it validates signature and metadata.
            from ..runtime.feature_model import FeatureModel
            FeatureModel.load(model.artifact_uri, model.explanation_spec).close()
            self._publish(None, None)
            return
        latent = None
        if model.artifact_uri:
            metadata = model.explanation_spec.metadata
            latent = LatentModel.load(model.artifact_uri, metadata.latent_space_source)
            if self.search_config.dimensions not in (None, latent.latent_dim):
                raise InvalidArgument(
                    f"dimensions is {self.search_config.dimensions} but the latent space "
                    f"{metadata.latent_space_source or '(the only output)'} has {latent.latent_dim} values",
                    field=f"{EXAMPLES_FIELD}.nearest_neighbor_search_config.config.dimensions")

        self._set_stage(Stage.READING_EXAMPLES)
        paths = readers.expand_uris(self.source.uris, self.source.field, self.source.default_format)
        with tempfile.TemporaryDirectory(prefix="explaind-data-") as scratch, \
                staged_locally(paths, scratch, self.stage_max_bytes) as local_paths:
            total = readers.count_records(local_paths)
            self._progress(0, total)
            self._set_stage(Stage.EMBEDDING)
            embeddings, ids, restricts, tags = self._embed_all(local_paths, latent, total)

        self._set_stage(Stage.BUILDING_INDEX)
        config = self.search_config
        if config.dimensions is None:
            config = dataclasses.replace(config, dimensions=int(embeddings.shape[1]))
        index = ExampleIndex.build(embeddings, ids, restricts, tags, config, use_gpu=self.use_gpu)
        self._check()
        self._publish(latent, index)

    def _embed_all(self, paths, latent, total):
        input_names = latent.input_names if latent is not None else None
        matrix = EmbeddingMatrix(total, self.source.field)
        ids, restricts, tags = [], [], []
        position = 0
        records = readers.iter_records(paths, input_names, self.source.field)
        for batch in readers.iter_batches(records, self.embed_batch_size):
            vectors: list[np.ndarray | None] = [r.embedding for r in batch]
            needs_model = [i for i, r in enumerate(batch) if r.embedding is None]
            if needs_model:
                if latent is None:
                    raise InvalidArgument(
                        f"example {position + needs_model[0]} has model inputs but the model has no "
                        "artifact_uri; give every example an embedding or upload the SavedModel",
                        field="model.artifact_uri")
                for group in _same_shape_groups([batch[i] for i in needs_model], needs_model, latent.input_specs,
                                                position):
                    inputs, members = group
                    out = latent.embed(inputs)
                    for j, i in enumerate(members):
                        vectors[i] = out[j]
            for offset, r in enumerate(batch):
                ids.append(r.id if r.id is not None else str(position + offset))
                restricts.append(parse_restricts(r.restricts, field=f"examples[{position + offset}].restricts"))
                tags.append(r.crowding_tag)
            matrix.append(_stack(vectors, position, self.source.field))
            position += len(batch)
            self._progress(position, max(total, position))
        if position == 0:
            raise InvalidArgument("the data set has no examples", field=self.source.field)
        return matrix.result(), ids, restricts, tags

    def _publish(self, latent, index) -> None:
        self._set_stage(Stage.PUBLISHING)
        record = self.record
        model = record.model
        if index is not None:
            prefix = self.models.build_prefix(record.model_id, self.build_id)
            with tempfile.TemporaryDirectory(prefix="explaind-build-") as tmp:
                index.save(tmp)
                size = self.models.objects.upload_dir(tmp, prefix)
            info = index.info
            config = index.config
            model.index_info.CopyFrom(model_pb2.IndexInfo(
                example_count=index.size, dimensions=index.dimensions,
                index_type=str(info.get("index_type", "")), index_bytes=int(info.get("index_bytes", size)),
                device=str(info.get("device", "cpu")), distance_measure_type=config.distance,
                feature_norm_type=config.feature_norm, nlist=int(info.get("nlist", 0) or 0),
                nprobe=int(info.get("nprobe", 0) or 0)))
            record.build_id = self.build_id
            record.search_config = config.to_json()
        self._sync_record()      # last look: cancelled or taken over while we built?
        self._check()
        self._stop_beating.set()
        model.state = model_pb2.Model.READY
        model.update_time.GetCurrentTime()
        self.models.publish(record)
        self.meta.stage = Stage.DONE
        self.meta.progress_percent = 100.0
        self.meta.update_time.GetCurrentTime()
        self.op.operation.metadata.Pack(self.meta)
        self.op.operation.response.Pack(model_service_pb2.UploadModelResponse(model=model))
        self.op.operation.done = True
        self._store_final()

    def _fail(self, code: int, message: str, field: str | None = None, description: str = "") -> None:
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


def _same_shape_groups(records, members: list[int], input_specs, position: int):
    """(stacked inputs, member indices) per shape. One group in the usual case; a
    signature with a free dimension (lengths, image sizes) may need several."""
    try:
        return [(batch_inputs(records, input_specs, field_prefix=f"examples[{position}..]"), members)]
    except ShapeMismatch:
        pass
    groups: dict[tuple, tuple[list, list]] = {}
    for record, member in zip(records, members):
        one = batch_inputs([record], input_specs, field_prefix=f"examples[{position + member}]")
        shapes = tuple((name, value.shape) for name, value in one.items())
        rows, indices = groups.setdefault(shapes, ([], []))
        rows.append(one)
        indices.append(member)
    return [({name: np.concatenate([r[name] for r in rows]) for name in rows[0]}, indices)
            for rows, indices in groups.values()]


def _stack(vectors: list[np.ndarray], position: int, field: str) -> np.ndarray:
    sizes = {np.asarray(v).reshape(-1).shape[0] for v in vectors}
    if len(sizes) != 1:
        raise InvalidArgument(f"examples {position}..{position + len(vectors) - 1} have embeddings of "
                              f"different sizes {sorted(sizes)}", field=field)
    return np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors])

