"""Several replicas on one S3 store (a real S3-compatible server, moto, on loopback)."""
from __future__ import annotations

import concurrent.futures
import os
import socket
import time
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from explaind.client import Client
from explaind.v1 import model_service_pb2
from tests import models as tfmodels
from tests.integration.helpers import brute_force, model_payload, neighbor_ids, search_config, write_jsonl
from tests.server_process import ServerProcess

pytest.importorskip("s3fs", reason="the s3 extra is part of the test install")
BUCKET = "explaind"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from moto.server import ThreadedMotoServer
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


def _put_tree(local_dir: str, prefix: str) -> str:
    import s3fs
    fs = s3fs.S3FileSystem()
    fs.put(local_dir, f"{BUCKET}/{prefix}", recursive=True)
    return f"s3://{BUCKET}/{prefix}"


def _replica(tmp_path, name, store, **settings) -> ServerProcess:
    return ServerProcess(store, str(tmp_path / f"{name}.log"), cache_dir=str(tmp_path / f"{name}-cache"),
                         store_poll_seconds=0.3, heartbeat_seconds=0.3, **settings).start()


def test_upload_on_a_served_and_watched_on_b(s3, tmp_path):
    store = f"s3://{BUCKET}/store-ab"
    path = tfmodels.tabular_embedding_model(str(tmp_path / "model"), n_features=8, latent_dim=16)
    x = tfmodels.random_inputs(150, (8,), seed=1)
    os.makedirs(tmp_path / "data")
    write_jsonl(tmp_path / "data" / "train.jsonl", [{"id": f"x{i}", "features": r.tolist()} for i, r in enumerate(x)])
    model_uri = _put_tree(path, "inputs/model")
    data_uri = _put_tree(str(tmp_path / "data"), "inputs/data")
    a, b = _replica(tmp_path, "a", store), _replica(tmp_path, "b", store)
    try:
        payload = model_payload(model_uri, [f"{data_uri}/*.jsonl"], search_config(16, "SQUARED_L2_DISTANCE"),
                                latent="embedding", neighbor_count=4)
        with a.client() as on_a, b.client() as on_b:
            op = on_a.upload_model(payload, model_id="shared")
            model = on_b.wait(op.name, timeout=180)              # polled on the other replica
            assert model.index_info.example_count == 150
            queries = tfmodels.random_inputs(2, (8,), seed=3)
            response = on_b.explain("shared", [{"features": q.tolist()} for q in queries])
            latent = tfmodels.keras_layer_latent(path, "embedding", x)
            ids, _ = brute_force(latent, tfmodels.keras_layer_latent(path, "embedding", queries), 4,
                                 "SQUARED_L2_DISTANCE")
            assert [neighbor_ids(e) for e in response.explanations] == [[f"x{j}" for j in row] for row in ids]

            # Client-side round robin over both replicas (what dns:/// with two A records does).
            channel = grpc.insecure_channel(f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}",
                                            options=[("grpc.lb_policy_name", "round_robin")])
            rr = Client(channel=channel)
            for _ in range(20):
                rr.explain("shared", [{"features": queries[0].tolist()}])
            rr.close()
            counts = [_handled_explains(r.metrics_port) for r in (a, b)]
            assert all(c >= 5 for c in counts), counts

            on_a.delete_model("shared")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    on_b.explain("shared", [{"features": queries[0].tolist()}])
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.NOT_FOUND
                    break
                time.sleep(0.2)
            else:
                pytest.fail("replica b still serves a deleted model")
    finally:
        a.kill()
        b.kill()


def _handled_explains(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "grpc_server_handled_total" and s.labels.get("grpc_method") == "Explain")


def test_same_model_id_on_two_replicas_at_once_builds_once(s3, tmp_path):
    store = f"s3://{BUCKET}/store-race"
    rng = np.random.default_rng(0)
    os.makedirs(tmp_path / "data")
    np.save(tmp_path / "data" / "e.npy", rng.normal(size=(100, 8)).astype(np.float32))
    data_uri = _put_tree(str(tmp_path / "data"), "inputs/race")
    a, b = _replica(tmp_path, "a", store), _replica(tmp_path, "b", store)
    try:
        payload = model_payload("", [f"{data_uri}/e.npy"], search_config(8, "DOT_PRODUCT_DISTANCE"))
        with a.client() as on_a, b.client() as on_b, concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(c.upload_model, payload, "raced") for c in (on_a, on_b)]
            outcomes = []
            for f in futures:
                try:
                    outcomes.append(f.result())
                except grpc.RpcError as e:
                    outcomes.append(e.code())
            winners = [o for o in outcomes if not isinstance(o, grpc.StatusCode)]
            assert len(winners) == 1 and grpc.StatusCode.ALREADY_EXISTS in outcomes, outcomes
            assert on_b.wait(winners[0].name, timeout=120).index_info.example_count == 100
    finally:
        a.kill()
        b.kill()


def test_killed_builder_is_failed_by_the_survivor_and_id_reusable(s3, tmp_path):
    store = f"s3://{BUCKET}/store-kill"
    # About 50 ms a batch on any machine: the build is still embedding when it is killed.
    path = tfmodels.slow_embedding_model(str(tmp_path / "model"), n_features=8, latent_dim=16)
    x = tfmodels.random_inputs(8000, (8,), seed=1)
    data = write_jsonl(tmp_path / "big.jsonl", [{"features": r.tolist()} for r in x])
    a = _replica(tmp_path, "a", store, embed_batch_size=16)
    b = _replica(tmp_path, "b", store, heartbeat_timeout_seconds=3)
    try:
        payload = model_payload(path, [data], search_config(16, "DOT_PRODUCT_DISTANCE"))
        with b.client() as on_b:
            with a.client() as on_a:
                op = on_a.upload_model(payload, model_id="orphan")
            meta = model_service_pb2.UploadModelOperationMetadata()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                on_b.get_operation(op.name).metadata.Unpack(meta)
                if meta.examples_embedded > 0:
                    break
                time.sleep(0.1)
            assert meta.examples_embedded > 0
            a.proc.kill()                                        # kill -9 mid-build
            a.proc.wait(10)
            killed_at = time.monotonic()
            done = on_b.wait_operation(op.name, timeout=20)
            while not done.done and time.monotonic() - killed_at < 30:
                done = on_b.wait_operation(op.name, timeout=5)
            assert done.done and done.HasField("error"), done
            assert "heartbeat" in done.error.message and time.monotonic() - killed_at < 30
            with pytest.raises(grpc.RpcError) as err:
                on_b.get_model("orphan")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            import s3fs
            fs = s3fs.S3FileSystem()
            fs.invalidate_cache()
            assert not fs.exists(f"{BUCKET}/store-kill/models/orphan/builds"), fs.find(f"{BUCKET}/store-kill")
            small = write_jsonl(tmp_path / "small.jsonl", [{"features": r.tolist()} for r in x[:30]])
            retry = model_payload(path, [small], search_config(16, "DOT_PRODUCT_DISTANCE"))
            assert on_b.wait(on_b.upload_model(retry, model_id="orphan"), timeout=120).index_info.example_count == 30
    finally:
        a.kill()
        b.kill()
