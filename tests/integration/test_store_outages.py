"""Store outages against real `explaind serve` processes on an S3 store (moto on
loopback, through tests/faulty_s3.py, which fails, slows or hangs requests on
purpose): while serving, during a store poll, a model load, a build and its
heartbeats."""
from __future__ import annotations

import time
import urllib.request

import boto3
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from explaind.client import Client, OperationError
from explaind.client.client import upload_metadata
from tests.faulty_s3 import Fault, FaultyS3
from tests.integration.helpers import model_payload, search_config
from tests.server_process import ServerProcess

BUCKET = "outages"
D = 8
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def views():
    """Two views of one S3 store: `healthy` never fails; `faulty` fails as told."""
    healthy, faulty = FaultyS3().start(), FaultyS3().start()
    boto3.client("s3", endpoint_url=healthy.endpoint, **_boto_credentials()).create_bucket(Bucket=BUCKET)
    yield healthy, faulty
    healthy.stop()
    faulty.stop()


@pytest.fixture
def faulty(views):
    yield views[1]
    views[1].clear()


def _boto_credentials() -> dict:
    return {"aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
            "region_name": AWS["AWS_DEFAULT_REGION"]}


def _objects(view: FaultyS3, prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=view.endpoint, **_boto_credentials())
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _put(view: FaultyS3, key: str, path: str) -> str:
    boto3.client("s3", endpoint_url=view.endpoint, **_boto_credentials()).upload_file(path, BUCKET, key)
    return f"s3://{BUCKET}/{key}"


def _replica(tmp_path, name: str, view: FaultyS3, store: str, **settings) -> ServerProcess:
    env = dict(AWS, AWS_ENDPOINT_URL_S3=view.endpoint, FSSPEC_S3_ENDPOINT_URL=view.endpoint)
    defaults = dict(store_poll_seconds=0.3, heartbeat_seconds=0.3, store_attempts=2, store_timeout_seconds=1)
    return ServerProcess(store, str(tmp_path / f"{name}.log"), env=env, cache_dir=str(tmp_path / f"{name}-cache"),
                         **{**defaults, **settings}).start()


def _embeddings_model(tmp_path, name: str, n: int = 200, uri: str | None = None) -> tuple[dict, np.ndarray]:
    data = np.random.default_rng(len(name)).normal(size=(n, D)).astype(np.float32)
    path = tmp_path / f"{name}.npy"
    np.save(path, data)
    return model_payload("", [uri or str(path)], search_config(D, "SQUARED_L2_DISTANCE")), data


def _store_errors(server: ServerProcess) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    return {s.labels["operation"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "explaind_store_errors_total"}


def _explain(client, model_id: str, data: np.ndarray, timeout: float = 30):
    response = client.explain(model_id, [data[0].tolist()], embeddings=True, neighbor_count=3, timeout=timeout)
    assert response.explanations[0].neighbors[0].neighbor_id == "0"     # the example itself is nearest
    return response


def _eventually(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, grpc.RpcError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not within {timeout}s: {e}") from e
            time.sleep(0.2)


def test_loaded_models_serve_through_an_outage_and_the_replica_catches_up(views, faulty, tmp_path):
    healthy = views[0]
    store = f"s3://{BUCKET}/serving"
    a = _replica(tmp_path, "a", healthy, store)
    b = _replica(tmp_path, "b", faulty, store)
    try:
        # One client without the SDK's retries, to see each answer of b as it is.
        with a.client() as on_a, b.client() as on_b, Client(channel=b.channel()) as b_once:
            kept, kept_data = _embeddings_model(tmp_path, "kept")
            gone, gone_data = _embeddings_model(tmp_path, "gone")
            for model_id, payload in (("kept", kept), ("gone", gone)):
                on_a.wait(on_a.upload_model(payload, model_id=model_id), timeout=120)
            _eventually(lambda: [_explain(on_b, m, d) for m, d in (("kept", kept_data), ("gone", gone_data))],
                        30, "b serving both models")

            # b's store hangs (every request times out); meanwhile a publishes one model and deletes another.
            outage = faulty.add(Fault("hang", seconds=3))
            fresh, fresh_data = _embeddings_model(tmp_path, "fresh")
            on_a.wait(on_a.upload_model(fresh, model_id="fresh"), timeout=120)
            on_a.delete_model("gone")
            health = health_pb2_grpc.HealthStub(b.channel())
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4:          # several failed polls of b
                _explain(on_b, "kept", kept_data, timeout=5)
                _explain(on_b, "gone", gone_data, timeout=5)   # b cannot know yet
                for service in ("", "explaind.v1.PredictionService"):
                    status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                    assert status == health_pb2.HealthCheckResponse.SERVING
            _expect_code(b_once, "fresh", grpc.StatusCode.UNAVAILABLE, "store")   # not loaded: needs the store
            assert outage.hits > 0 and _store_errors(b).get("list", 0) > 0

            # b can list again, but not yet download index files: the load waits for the store.
            faulty.remove(outage)
            downloads = faulty.add(Fault("unavailable", method="GET", key=r"^/[^?]*/fresh/builds/"))  # files, not listings
            _eventually(lambda: _expect_code(b_once, "gone", grpc.StatusCode.NOT_FOUND), 20, "b dropping 'gone'")
            _expect_code(b_once, "fresh", grpc.StatusCode.UNAVAILABLE, "store")
            assert _store_errors(b).get("download", 0) > 0

            faulty.remove(downloads)                    # back: b loads it after a short backoff
            _eventually(lambda: _explain(on_b, "fresh", fresh_data), 30, "b serving 'fresh'")
            _explain(on_b, "kept", kept_data)
    finally:
        a.kill()
        b.kill()


def _expect_code(client, model_id: str, code: grpc.StatusCode, in_details: str = ""):
    try:
        client.explain(model_id, [[0.0] * D], embeddings=True, timeout=30)
    except grpc.RpcError as e:
        assert e.code() == code and in_details in e.details(), (e.code(), e.details())
        return
    raise AssertionError(f"{model_id} answered, expected {code.name}")


def test_a_build_rides_through_transient_store_errors(views, faulty, tmp_path):
    b = _replica(tmp_path, "b", faulty, f"s3://{BUCKET}/transient", store_attempts=4)
    try:
        payload, data = _embeddings_model(tmp_path, "flaky", n=500)
        faults = [faulty.add(Fault("unavailable", method="PUT", key=r"/builds/", times=2)),
                  faulty.add(Fault("error", method="PUT", key=r"/operations/", times=2)),
                  faulty.add(Fault("delay", seconds=0.2, times=20))]          # and slow
        with b.client() as client:
            model = client.wait(client.upload_model(payload, model_id="flaky"), timeout=120)
            assert model.index_info.example_count == 500
            _eventually(lambda: _explain(client, "flaky", data), 30, "serving the model")
        assert all(f.hits == f.times for f in faults), [(f.action, f.hits) for f in faults]
        errors = _store_errors(b)
        assert errors.get("upload", 0) >= 2 and errors.get("write", 0) >= 2, errors
    finally:
        b.kill()


def test_a_build_that_cannot_publish_fails_with_the_store_error_and_leaves_nothing(views, faulty, tmp_path):
    healthy = views[0]
    store = f"s3://{BUCKET}/unpublished"
    b = _replica(tmp_path, "b", faulty, store, heartbeat_timeout_seconds=2)
    try:
        payload, data = _embeddings_model(tmp_path, "doomed")
        uploads = faulty.add(Fault("unavailable", method="PUT", key=r"/builds/"))
        with b.client() as client:
            with pytest.raises(OperationError) as err:
                client.wait(client.upload_model(payload, model_id="doomed"), timeout=120)
            status = err.value.status
            assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
            assert "PUBLISHING" in status.message and "store is unreachable" in status.message, status.message
            assert not [k for k in _objects(healthy, "unpublished/models/doomed")], "half-published"
            _expect_code(client, "doomed", grpc.StatusCode.NOT_FOUND)
            faulty.remove(uploads)                      # the id is free again
            assert client.wait(client.upload_model(payload, model_id="doomed"), timeout=120).index_info.example_count
            _eventually(lambda: _explain(client, "doomed", data), 30, "serving the model")
    finally:
        b.kill()


def test_a_model_record_written_with_its_answers_lost_is_a_published_model(views, faulty, tmp_path):
    """Every write of model.json lands but its answer is lost (the connection drops):
    the build asks the store, finds its record there, and succeeds; nothing is discarded."""
    b = _replica(tmp_path, "b", faulty, f"s3://{BUCKET}/lost-answers", heartbeat_timeout_seconds=1)
    try:
        payload, data = _embeddings_model(tmp_path, "landed")
        lost = faulty.add(Fault("lost", method="PUT", key=r"/landed/model\.json"))
        with b.client() as client:
            model = client.wait(client.upload_model(payload, model_id="landed"), timeout=120)
            assert model.index_info.example_count == len(data) and lost.hits >= 2
            faulty.remove(lost)
            _eventually(lambda: _explain(client, "landed", data), 30, "serving the model")
    finally:
        b.kill()


@pytest.mark.parametrize("outage_longer_than_timeout", [False, True])
def test_heartbeats_through_an_outage(views, faulty, tmp_path, outage_longer_than_timeout):
    """The operation record cannot be written for a while, during a build made slow
    on purpose (its data file, in the same S3, answers after 3 s), and over the stage
    changes that follow. Shorter than the heartbeat timeout: the build goes on and
    succeeds. Longer: it fails with the store's error, written once the store is
    back, and frees its model id."""
    healthy = views[0]
    store = f"s3://{BUCKET}/beats-{outage_longer_than_timeout}"
    timeout = 2.0 if outage_longer_than_timeout else 8.0
    b = _replica(tmp_path, "b", faulty, store, heartbeat_timeout_seconds=timeout)
    try:
        payload, data = _embeddings_model(tmp_path, "beats", uri=None)
        uri = _put(healthy, f"inputs/beats-{outage_longer_than_timeout}.npy", str(tmp_path / "beats.npy"))
        payload["explanationSpec"]["parameters"]["examples"]["gcsSource"]["uris"] = [uri]
        faulty.add(Fault("delay", method="GET", key=r"/inputs/", seconds=3, times=1))
        with b.client() as client:
            op = client.upload_model(payload, model_id="beats")
            records = faulty.add(Fault("unavailable", method="PUT", key=r"/operations/"))
            if not outage_longer_than_timeout:
                time.sleep(4)                   # past the slow read: the next stages' writes fail too
                faulty.remove(records)
                model = client.wait(op, timeout=120)
                assert model.index_info.example_count == len(data)
                assert records.hits > 0
                return
            # The build gives up: it frees the id (a DELETE, which works), then waits to write its outcome.
            claim = "beats-True/models/beats/building.json"
            _eventually(lambda: _assert_absent(healthy, claim), 60, "the build releasing its claim")
            faulty.remove(records)
            with pytest.raises(OperationError) as err:
                client.wait(op, timeout=60)
            status = err.value.status
            assert status.code == grpc.StatusCode.UNAVAILABLE.value[0], status
            assert "heartbeat timeout" in status.message and "store is unreachable" in status.message
            assert upload_metadata(client.get_operation(op.name)).stage != 0
            _expect_code(client, "beats", grpc.StatusCode.NOT_FOUND)
            assert not _objects(healthy, "beats-True/models/beats/")
    finally:
        b.kill()


def _assert_absent(view: FaultyS3, key: str) -> None:
    assert key not in _objects(view, key), f"{key} still there"
