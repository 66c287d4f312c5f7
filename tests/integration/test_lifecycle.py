"""Restart persistence and cancel, through real daemon processes."""
from __future__ import annotations

import os
import time

import grpc
import pytest
from google.rpc import code_pb2

from explaind.v1 import model_service_pb2
from tests import models as tfmodels
from tests.integration.helpers import model_payload, neighbor_ids, search_config, write_jsonl


def test_restart_serves_at_once_without_rebuild(start_server, tmp_path):
    path = tfmodels.tabular_embedding_model(str(tmp_path / "model"), n_features=8, latent_dim=16)
    x = tfmodels.random_inputs(200, (8,), seed=1)
    data = write_jsonl(tmp_path / "d.jsonl", [{"features": r.tolist(), "id": f"r{i}"} for i, r in enumerate(x)])
    store = str(tmp_path / "store")
    first = start_server(store=store)
    queries = [{"features": q.tolist()} for q in tfmodels.random_inputs(3, (8,), seed=9)]
    with first.client() as client:
        op = client.upload_model(model_payload(path, [data], search_config(16, "COSINE_DISTANCE"),
                                               latent="embedding", neighbor_count=5), model_id="persisted")
        model = client.wait(op, timeout=180)
        before = client.explain("persisted", queries)
    assert first.stop() == 0, first.log_tail()

    second = start_server(store=store)
    with second.client() as client:
        # The first call after the port opens already answers: nothing is rebuilt.
        after = client.explain("persisted", queries)
        again = client.get_model("persisted")
        ops = client.list_operations()
        assert [o.name for o in client.list_operations(filter="done=true AND model=persisted")] == [op.name]
        assert client.list_operations(filter="done=false") == []
        with pytest.raises(grpc.RpcError) as err:
            client.list_operations(filter="state=RUNNING")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "filter" in err.value.details()
    assert [neighbor_ids(e) for e in after.explanations] == [neighbor_ids(e) for e in before.explanations]
    assert again.update_time == model.update_time
    assert [o.name for o in ops] == [op.name]
    assert second.stop() == 0


def test_cancel_running_upload_publishes_nothing(start_server, tmp_path):
    # About 50 ms a batch on any machine: 500 batches outlast the checks below.
    path = tfmodels.slow_embedding_model(str(tmp_path / "model"), n_features=8, latent_dim=16)
    x = tfmodels.random_inputs(8000, (8,), seed=1)
    data = write_jsonl(tmp_path / "big.jsonl", [{"features": r.tolist()} for r in x])
    store = str(tmp_path / "store")
    server = start_server(store=store, embed_batch_size=16, heartbeat_seconds=0.2)
    with server.client() as client:
        op = client.upload_model(model_payload(path, [data], search_config(16, "DOT_PRODUCT_DISTANCE")),
                                 model_id="cancelled")
        meta = model_service_pb2.UploadModelOperationMetadata()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            client.get_operation(op.name).metadata.Unpack(meta)
            if meta.stage == meta.Stage.EMBEDDING and meta.examples_embedded > 0:
                break
            time.sleep(0.1)
        assert meta.stage == meta.Stage.EMBEDDING, meta
        # WaitOperation honours its timeout: it answers, not done, after about a second.
        start = time.monotonic()
        waited = client.wait_operation(op.name, timeout=1)
        assert not waited.done and 0.9 <= time.monotonic() - start < 5, waited
        # Explain on a model still building is FAILED_PRECONDITION.
        with pytest.raises(grpc.RpcError) as err:
            client.explain("cancelled", [{"features": [0.0] * 8}])
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        client.cancel_operation(op.name)
        done = client.wait_operation(op.name, timeout=30)
        assert done.done and done.error.code == code_pb2.CANCELLED, done
        assert "EMBEDDING" in done.error.message
        with pytest.raises(grpc.RpcError) as err:
            client.get_model("cancelled")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(store, "models")) for f in files]
    assert leftovers == []
    # The id is free again.
    with server.client() as client:
        small = write_jsonl(tmp_path / "small.jsonl", [{"features": r.tolist()} for r in x[:50]])
        op = client.upload_model(model_payload(path, [small], search_config(16, "DOT_PRODUCT_DISTANCE")),
                                 model_id="cancelled")
        assert client.wait(op, timeout=120).index_info.example_count == 50


def test_delete_operation_forgets_without_cancelling(start_server, tmp_path):
    import numpy as np
    server = start_server()
    np.save(tmp_path / "e.npy", np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32))
    with server.client() as client:
        op = client.upload_model(model_payload("", [str(tmp_path / "e.npy")], search_config(8, "DOT_PRODUCT_DISTANCE")),
                                 model_id="kept")
        client.delete_operation(op.name)
        with pytest.raises(grpc.RpcError) as err:
            client.get_operation(op.name)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                model = client.get_model("kept")
                if model.state == model.READY:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        assert client.get_model("kept").index_info.example_count == 3000
        assert op.name not in [o.name for o in client.list_operations()]


def test_a_long_silent_stage_is_not_taken_for_a_dead_worker(start_server, tmp_path):
    """One model run (the only batch of the embedding stage) lasts about twice the
    other replica's heartbeat timeout; the build's heartbeats come from their own
    thread, so the watching replica leaves it alone and the upload succeeds. (A
    build that beat only between stages would be failed as dead.) The margins are
    seconds, not tenths, so a loaded machine starving the heartbeat thread for a
    moment cannot fail the test."""
    path = tfmodels.slow_embedding_model(str(tmp_path / "model"), n_features=8, latent_dim=16,
                                         seconds_per_batch=8.0)
    x = tfmodels.random_inputs(100, (8,), seed=1)
    data = write_jsonl(tmp_path / "d.jsonl", [{"features": r.tolist()} for r in x])
    store = str(tmp_path / "store")
    builder = start_server(store=store, heartbeat_seconds=0.2)
    start_server(store=store, heartbeat_timeout_seconds=4.0, store_poll_seconds=0.2)   # the watcher
    with builder.client() as client:
        op = client.upload_model(model_payload(path, [data], search_config(16, "DOT_PRODUCT_DISTANCE"),
                                               latent="embedding"), model_id="slow-start")
        model = client.wait(op, timeout=180)
        assert model.index_info.example_count == 100
        assert not client.get_operation(op.name).HasField("error")
