"""BatchManager without a daemon: what it refuses before a job starts, a job
run to its end on a runner stand-in (its parts published in Vertex's layout),
and the housekeeping that ends a dead worker's job with its counts kept and
its staging folder removed."""
from __future__ import annotations

import dataclasses
import os
import threading
import time

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.rpc import code_pb2

from explaind.server.batch.layout import ERRORS, RESULTS, staged_folder
from explaind.server.batch.manager import BatchManager, metadata_of
from explaind.server.batch.task import BatchOutput, ErrorKind
from explaind.server.batch.writer import PartWriter
from explaind.server.builds.operation_job import JobServices
from explaind.server.config import Settings
from explaind.server.errors import ExplaindError
from explaind.server.security import uris
from explaind.server.store.models import ModelRecord, ModelStore
from explaind.server.store.objects import ObjectStore
from explaind.server.store.operations import OperationRecord, OperationStore
from explaind.v1 import batch_service_pb2, model_pb2

State = batch_service_pb2.JobState


class WritingRunner:
    """Stands in for the build process: writes the task's parts as run.py would, reports rows."""

    def __init__(self, release: threading.Event | None = None):
        self.release = release

    def run(self, request):
        task = request.task
        request.progress.rows(0, 0, 3)
        if self.release is not None:
            self.release.wait(10)
        with PartWriter(staged_folder(task.staging, RESULTS), 10) as results:
            results.write(0, b'{"instance": 0}')
            results.write(2, b'{"instance": 2}')
        with PartWriter(staged_folder(task.staging, ERRORS), 10) as errors:
            errors.write(1, b'{"instance": 1, "error": {"code": 3, "message": "bad"}}')
        request.progress.rows(3, 1, 3)
        return BatchOutput(3, 2, 1, (ErrorKind(3, "f line 2: bad", 1),))


@pytest.fixture
def setup(tmp_path):
    uris.install(uris.UriPolicy())
    objects = ObjectStore(str(tmp_path / "store"))
    models, operations = ModelStore(objects), OperationStore(objects)
    model = json_format.ParseDict({"name": "models/m", "displayName": "my model", "artifactUri": "/m",
                                   "explanationSpec": {"parameters": {"integratedGradientsAttribution": {}}}},
                                  model_pb2.Model())
    models.publish(ModelRecord(model=model))
    (tmp_path / "in.jsonl").write_text("[1]\n[2]\n[3]\n")
    services = JobServices(models, operations, "worker-a", heartbeat_seconds=0.05, heartbeat_timeout_seconds=1)
    yield services, tmp_path
    uris.install(uris.UriPolicy())


def _manager(services, runner, **settings) -> BatchManager:
    return BatchManager(services, {"local": runner}, dataclasses.replace(Settings(), **settings))


def _request(tmp_path, **fields) -> batch_service_pb2.BatchExplainRequest:
    return batch_service_pb2.BatchExplainRequest(model="models/m", uris=[str(tmp_path / "in.jsonl")],
                                                 output_uri_prefix=str(tmp_path / "out"), **fields)


def _wait_done(operations: OperationStore, op_id: str):
    end = time.monotonic() + 10
    while not (record := operations.get(op_id)).operation.done:
        assert time.monotonic() < end
        time.sleep(0.02)
    return record


def test_a_job_runs_on_its_runner_and_publishes_in_vertex_s_layout(setup):
    services, tmp_path = setup
    manager = _manager(services, WritingRunner())
    try:
        record = manager.create(_request(tmp_path, display_name="nightly"))
        assert metadata_of(record.operation).state == State.JOB_STATE_QUEUED
        done = _wait_done(services.operations, record.op_id)
    finally:
        manager.shutdown()
    meta = metadata_of(done.operation)
    assert meta.state == State.JOB_STATE_SUCCEEDED and not done.operation.HasField("error")
    assert (meta.rows_total, meta.rows_succeeded, meta.rows_failed) == (3, 2, 1)
    assert [(s.code, s.message) for s in meta.partial_failures] == [(3, "1 row: f line 2: bad")]
    assert os.path.basename(meta.output_directory).startswith("prediction-my_model-")
    response = batch_service_pb2.BatchExplainResponse()
    done.operation.response.Unpack(response)
    assert list(response.result_files) == ["explanation.results-00000-of-00001"]
    assert list(response.error_files) == ["explanation.errors_stats-00000-of-00001"]
    assert os.listdir(tmp_path / "out") == [os.path.basename(meta.output_directory)]
    assert meta.start_time.seconds and meta.end_time.seconds and meta.runner == "local"


def test_a_cancelled_job_publishes_nothing(setup):
    services, tmp_path = setup
    release = threading.Event()
    manager = _manager(services, WritingRunner(release))
    try:
        record = manager.create(_request(tmp_path))
        manager.cancel(services.operations.get(record.op_id))
        release.set()
        done = _wait_done(services.operations, record.op_id)
        with pytest.raises(ExplaindError) as e:           # an ended job cannot be cancelled
            manager.cancel(done)
        assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        manager.shutdown()
    assert metadata_of(done.operation).state == State.JOB_STATE_CANCELLED
    assert done.operation.error.code == code_pb2.CANCELLED
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("settings,fields,code,field", [
    ({"disable_model_uploads": True}, {}, grpc.StatusCode.PERMISSION_DENIED, None),
    ({}, {"labels": {"explaind.dev/build-runner": "ray"}}, grpc.StatusCode.FAILED_PRECONDITION,
     'labels["explaind.dev/build-runner"]'),
    ({}, {"labels": {"explaind.dev/build-runner": "gpu-farm"}}, grpc.StatusCode.INVALID_ARGUMENT,
     'labels["explaind.dev/build-runner"]'),
])
def test_refusals_before_a_job_starts(setup, settings, fields, code, field):
    services, tmp_path = setup
    manager = _manager(services, WritingRunner(), **settings)
    try:
        with pytest.raises(ExplaindError) as e:
            manager.create(_request(tmp_path, **fields))
    finally:
        manager.shutdown()
    assert (e.value.code, e.value.field) == (code, field)
    assert services.operations.list() == []


def test_jobs_past_the_replica_s_bound_are_resource_exhausted(setup):
    services, tmp_path = setup
    release = threading.Event()
    manager = _manager(services, WritingRunner(release), max_concurrent_batch_jobs=1)
    try:
        manager.create(_request(tmp_path))
        with pytest.raises(ExplaindError) as e:
            manager.create(_request(tmp_path))
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        release.set()
        manager.shutdown()


def test_a_dead_worker_s_job_is_failed_with_its_counts_and_its_staging_removed(setup):
    services, tmp_path = setup
    # What a replica that died mid-job left: its operation RUNNING, silent for 5 s, and a staging folder.
    meta = batch_service_pb2.BatchExplainOperationMetadata(
        state=State.JOB_STATE_RUNNING, model="models/m", rows_total=10, rows_succeeded=4, rows_failed=1,
        output_directory=str(tmp_path / "out" / "prediction-m-2025_01_01T00_00_00_000Z"), worker="worker-a")
    operation = operations_pb2.Operation(name="operations/deadbeef")
    operation.metadata.Pack(meta)
    stale = OperationRecord(operation=operation, worker="worker-a", heartbeat=time.time() - 5)
    services.operations.objects.write("operations/deadbeef.json", stale.to_bytes())
    staging = tmp_path / "out" / ".explaind-staging-deadbeef"
    os.makedirs(staging / "results")
    (staging / "results" / "part-000000000000").write_text("{}\n")
    fresh = dataclasses.replace(stale, operation=operations_pb2.Operation(name="operations/alive"),
                                heartbeat=time.time())
    fresh.operation.metadata.Pack(meta)
    services.operations.objects.write("operations/alive.json", fresh.to_bytes())
    housekeeper = _manager(dataclasses.replace(services, worker="worker-b"), WritingRunner(),
                           heartbeat_timeout_seconds=1)
    try:
        assert housekeeper.fail_stale_jobs() == 1           # the silent one only
        assert housekeeper.fail_stale_jobs() == 0           # ended once
    finally:
        housekeeper.shutdown()
    ended = services.operations.get("deadbeef")
    ended_meta = metadata_of(ended.operation)
    assert ended.operation.done and ended.operation.error.code == code_pb2.ABORTED
    assert "worker-a stopped sending heartbeats" in ended.operation.error.message and "5 of 10 rows" in \
        ended.operation.error.message
    assert ended_meta.state == State.JOB_STATE_FAILED
    assert (ended_meta.rows_total, ended_meta.rows_succeeded, ended_meta.rows_failed) == (10, 4, 1)
    assert ended_meta.end_time.seconds > 0
    assert not staging.exists() and os.listdir(tmp_path / "out") == []
    assert not services.operations.get("alive").operation.done
