"""A build runs in its own process (--build-runner local): when that process is
killed or outgrows --build-memory-limit, the operation fails naming the stage
and the cause, and the daemon goes on answering for every model it had."""
from __future__ import annotations

import json
import os
import re
import signal
import time

import grpc
import numpy as np
import pytest
from google.rpc import code_pb2

from explaind.client import OperationError
from tests import models as tfmodels
from tests.integration.helpers import model_payload, neighbor_ids, search_config, wait_for_embedding, write_jsonl



def _build_process(server, operation: str) -> int:
    """The pid of the operation's build process, from the daemon's log, checked to be its child."""
    for line in server.log_tail(10**7).splitlines():
        if line.startswith("{") and '"build process started"' in line and operation in line:
            pid = json.loads(line)["pid"]
            with open(f"/proc/{pid}/stat") as f:
                assert int(f.read().rsplit(")", 1)[1].split()[1]) == server.proc.pid
            return pid
    raise AssertionError(f"no build process logged for {operation}")


@pytest.fixture
def served(start_server, tmp_path):
    """A store with one published SavedModel model ("kept") and its answers to three queries."""
    path = tfmodels.tabular_embedding_model(str(tmp_path / "kept-model"), n_features=8, latent_dim=16)
    x = tfmodels.random_inputs(300, (8,), seed=2)
    data = write_jsonl(tmp_path / "kept.jsonl", [{"features": r.tolist(), "id": f"k{i}"} for i, r in enumerate(x)])
    store = str(tmp_path / "store")
    queries = [{"features": q.tolist()} for q in tfmodels.random_inputs(3, (8,), seed=5)]
    return store, path, queries, model_payload(path, [data], search_config(16, "SQUARED_L2_DISTANCE"),
                                               latent="embedding", neighbor_count=5)


def test_a_killed_build_process_fails_its_operation_only(start_server, served, tmp_path):
    store, _, queries, kept = served
    server = start_server(store=store, embed_batch_size=16, heartbeat_seconds=0.2)
    slow = tfmodels.slow_embedding_model(str(tmp_path / "slow"), n_features=8, latent_dim=16)
    data = write_jsonl(tmp_path / "big.jsonl", [{"features": r.tolist()} for r in tfmodels.random_inputs(8000, (8,))])
    with server.client() as client:
        client.wait(client.upload_model(kept, model_id="kept"), timeout=180)
        before = client.explain("kept", queries)
        op = client.upload_model(model_payload(slow, [data], search_config(16, "DOT_PRODUCT_DISTANCE")),
                                 model_id="crashing")
        assert wait_for_embedding(client, op).build_runner == "local"
        os.kill(_build_process(server, op.name), signal.SIGKILL)
        done = client.wait_operation(op.name, timeout=60)
        assert done.done and done.error.code == code_pb2.INTERNAL, done
        assert re.search(r"stage EMBEDDING: the build process died of SIGKILL", done.error.message), done.error
        assert "out-of-memory" in done.error.message
        after = client.explain("kept", queries)
        with pytest.raises(grpc.RpcError) as err:
            client.get_model("crashing")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # The id is free again and the next build runs (in a fresh process).
        small = write_jsonl(tmp_path / "small.jsonl", [{"features": r.tolist()} for r in tfmodels.random_inputs(40, (8,))])
        again = client.upload_model(model_payload(slow, [small], search_config(16, "DOT_PRODUCT_DISTANCE")),
                                    model_id="crashing")
        assert client.wait(again, timeout=180).index_info.example_count == 40
    assert server.proc.poll() is None
    assert [neighbor_ids(e) for e in after.explanations] == [neighbor_ids(e) for e in before.explanations]


def test_a_build_over_its_memory_limit_fails_with_resource_exhausted(start_server, served, tmp_path):
    store, _, queries, kept = served
    with start_server(store=store).client() as client:
        client.wait(client.upload_model(kept, model_id="kept"), timeout=180)
        before = client.explain("kept", queries)
    # 2M x 48 float32 embeddings: 384 MB, over the limit in the index alone. A build streams its
    # embeddings (one copy: the index's), so a set near the limit would pass or fail by the baseline.
    vectors = np.random.default_rng(0).standard_normal((2_000_000, 48), dtype=np.float32)
    np.save(tmp_path / "big.npy", vectors)
    del vectors
    # No spare: a spare imports TensorFlow ahead, which alone takes more than this limit.
    server = start_server(store=store, build_memory_limit="300Mi", build_spare_process="false")
    with server.client() as client:
        op = client.upload_model(model_payload("", [str(tmp_path / "big.npy")], search_config(48, "DOT_PRODUCT_DISTANCE")),
                                 model_id="too-big")
        with pytest.raises(OperationError) as err:
            client.wait(op, timeout=180)
        status = err.value.status
        assert status.code == code_pb2.RESOURCE_EXHAUSTED, status
        assert re.search(r"^stage (READING_EXAMPLES|EMBEDDING|BUILDING_INDEX): the build process used [\d.]+ [MG]iB "
                         r"of memory, over --build-memory-limit \(300 MiB\)", status.message), status.message
        after = client.explain("kept", queries)
        assert [m.name for m in client.list_models()] == ["models/kept"]
    assert server.proc.poll() is None
    assert [neighbor_ids(e) for e in after.explanations] == [neighbor_ids(e) for e in before.explanations]
    assert [f for _, _, files in os.walk(os.path.join(store, "models", "too-big")) for f in files] == []


def test_a_build_process_does_not_outlive_its_daemon(start_server, tmp_path):
    """A replica that dies (kill -9) takes its build with it: the child sees its socket close and
    exits, so nothing keeps writing for an operation that another replica will fail."""
    slow = tfmodels.slow_embedding_model(str(tmp_path / "slow"), n_features=8, latent_dim=16)
    data = write_jsonl(tmp_path / "big.jsonl", [{"features": r.tolist()} for r in tfmodels.random_inputs(8000, (8,))])
    server = start_server(embed_batch_size=16, build_spare_process="false")
    with server.client() as client:
        op = client.upload_model(model_payload(slow, [data], search_config(16, "DOT_PRODUCT_DISTANCE")),
                                 model_id="orphan")
        wait_for_embedding(client, op)
    child = _build_process(server, op.name)
    server.proc.kill()
    server.proc.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}/cmdline") and \
            open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.2)
    alive = os.path.exists(f"/proc/{child}/stat") and open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    assert not alive, "the build process outlived its daemon"


def test_an_update_runs_in_a_build_process_that_can_die_without_touching_the_served_model(start_server, tmp_path):
    """UpdateExplanationDataset under the local runner: its embedding stage runs in a build
    process and holds an upload slot; killing that process fails the update only. The
    published version serves on, the update's staging build goes, the model is free for
    the next update, which runs in a fresh process."""
    slow = tfmodels.slow_embedding_model(str(tmp_path / "slow"), n_features=8, latent_dim=16)
    base = write_jsonl(tmp_path / "base.jsonl",
                       [{"features": r.tolist(), "id": f"k{i}"} for i, r in enumerate(tfmodels.random_inputs(40, (8,)))])
    big = write_jsonl(tmp_path / "big.jsonl", [{"features": r.tolist()} for r in tfmodels.random_inputs(8000, (8,))])
    small = write_jsonl(tmp_path / "small.jsonl",
                        [{"features": r.tolist()} for r in tfmodels.random_inputs(30, (8,), seed=7)])
    store = tmp_path / "store"
    server = start_server(store=str(store), embed_batch_size=16, heartbeat_seconds=0.2, max_concurrent_uploads=1)
    queries = [{"features": q.tolist()} for q in tfmodels.random_inputs(3, (8,), seed=5)]
    with server.client() as client:
        client.wait(client.upload_model(model_payload(slow, [base], search_config(16, "SQUARED_L2_DISTANCE"),
                                                      neighbor_count=5), model_id="m"), timeout=180)
        before = client.explain("m", queries)
        published = json.loads((store / "models" / "m" / "model.json").read_text())["build_id"]

        op = client.update_explanation_dataset("m", uris=[big])
        meta = wait_for_embedding(client, op)
        assert (meta.build_runner, meta.base_build) == ("local", published)
        # The update holds this replica's only upload slot.
        with pytest.raises(grpc.RpcError) as busy:
            client.upload_model(model_payload(slow, [small], search_config(16, "SQUARED_L2_DISTANCE")), "other")
        assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        os.kill(_build_process(server, op.name), signal.SIGKILL)
        done = client.wait_operation(op.name, timeout=60)
        assert done.done and done.error.code == code_pb2.INTERNAL, done
        assert re.search(r"stage EMBEDDING: the build process died of SIGKILL", done.error.message), done.error
        assert client.get_model("m").index_info.example_count == 40
        assert [neighbor_ids(e) for e in client.explain("m", queries).explanations] == \
            [neighbor_ids(e) for e in before.explanations]
        assert os.listdir(store / "models" / "m" / "builds") == [published]
        assert not (store / "models" / "m" / "building.json").exists()

        op = client.update_explanation_dataset("m", uris=[small], remove_ids=["k0"])
        model = client.wait(op, timeout=180)
        assert model.index_info.example_count == 69
        everything = client.explain("m", queries[:1], neighbor_count=69).explanations[0]
        assert set(neighbor_ids(everything)) == {f"k{i}" for i in range(1, 40)} | {str(i) for i in range(40, 70)}
    assert server.proc.poll() is None
    assert server.log_tail(10**7).count('"build process started"') == 3      # upload, killed update, update
