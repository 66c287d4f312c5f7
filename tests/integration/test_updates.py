"""UpdateExplanationDataset through real daemons: examples added from several
data formats and removed by id, answers equal to a fresh upload of the same
examples, a failed update that leaves the served version untouched, updates
serialised per model, and two replicas on one store that switch to the new
version without a gap in serving."""
from __future__ import annotations

import json
import os
import threading
import time

import grpc
import numpy as np
import pytest

from explaind.client.client import OperationError, operation_result
from tests.integration.helpers import bad_request_fields, model_payload, neighbor_ids, search_config, write_jsonl
from tests.server_process import ServerProcess
from tests import oracles

D = 8


def _oracle_ids(x, ids, queries, k, admissible=None, tags=None, crowding=0):
    out = []
    for q in queries:
        dist = oracles.distances(q, x, "SQUARED_L2_DISTANCE")[0]
        ok = np.ones(len(x), bool) if admissible is None else admissible
        out.append([ids[p] for p in oracles.crowded_search(dist, ok, tags or [None] * len(x), k, crowding)])
    return out


def _explain_ids(client, model, queries, k=5, **kwargs):
    response = client.explain(model, [q.tolist() for q in queries], neighbor_count=k, embeddings=True, **kwargs)
    return [neighbor_ids(e) for e in response.explanations]


def _update_result(client, op, timeout=120):
    client.wait(op, timeout=timeout)
    return operation_result(client.get_operation(op.name))


def test_update_adds_from_files_removes_by_id_and_answers_as_a_fresh_upload(start_server, tmp_path):
    store = tmp_path / "store"
    server = start_server(store=str(store))
    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, D)).astype(np.float32)
    np.save(tmp_path / "base.npy", base)                                  # ids "0".."299"
    added = rng.normal(size=(20, D)).astype(np.float32) + 3.0
    jsonl = write_jsonl(tmp_path / "add.jsonl", [
        {"id": f"new-{i}", "embedding": v.tolist(), "crowding_tag": f"t{i % 2}",
         "restricts": [{"namespace": "color", "allow": ["red"]}]} for i, v in enumerate(added)])
    more = rng.normal(size=(5, D)).astype(np.float32)
    np.save(tmp_path / "more.npy", more)       # no ids: 300 (the next default id) + position in the data set
    config = search_config(D, "SQUARED_L2_DISTANCE")
    queries = rng.normal(size=(4, D)).astype(np.float32) + 1.5
    with server.client() as client:
        client.wait(client.upload_model(model_payload("", [str(tmp_path / "base.npy")], config), "m"), timeout=120)
        before = _explain_ids(client, "m", queries)

        # Requests refused before any operation starts, each naming its field.
        for kwargs, field in (({}, "examples"),
                              ({"remove_ids": ["x" * 5000]}, "remove_example_ids[0]"),
                              ({"uris": [str(tmp_path / "missing.jsonl")]}, "examples.gcs_source.uris")):
            with pytest.raises(grpc.RpcError) as e:
                client.update_explanation_dataset("m", **kwargs)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in bad_request_fields(e.value)[0]
        with pytest.raises(grpc.RpcError) as e:
            client.update_explanation_dataset("nope", remove_ids=["1"])
        assert e.value.code() == grpc.StatusCode.NOT_FOUND

        # A failed update (an id the model lacks) publishes nothing: the old version serves on.
        op = client.update_explanation_dataset("m", uris=[jsonl], remove_ids=["0", "no-such-id"])
        with pytest.raises(OperationError) as failed:
            client.wait(op, timeout=120)
        assert failed.value.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "no-such-id" in failed.value.status.message and "BUILDING_INDEX" in failed.value.status.message
        assert client.get_model("m").index_info.example_count == 300
        assert _explain_ids(client, "m", queries) == before
        assert len(os.listdir(store / "models" / "m" / "builds")) == 1      # its staging build is gone
        assert not (store / "models" / "m" / "building.json").exists()       # and its claim

        op = client.update_explanation_dataset("m", uris=[jsonl, str(tmp_path / "more.npy")],
                                               remove_ids=["0", "1", "2"])
        result = _update_result(client, op)
        assert (result.examples_added, result.examples_removed) == (25, 3)
        assert result.model.index_info.example_count == 322 and not result.retrain_recommended

    ids = [str(i) for i in range(3, 300)] + [f"new-{i}" for i in range(20)] + [str(320 + i) for i in range(5)]
    x = np.concatenate([base[3:], added, more])
    tags = [None] * 297 + [f"t{i % 2}" for i in range(20)] + [None] * 5
    red = np.array([i.startswith("new-") for i in ids])
    with server.client() as client:
        assert _explain_ids(client, "m", queries) == _oracle_ids(x, ids, queries, 5)
        assert _explain_ids(client, "m", queries, restrictions=[{"namespace": "color", "allow": ["red"]}]) == \
            _oracle_ids(x, ids, queries, 5, admissible=red)
        assert _explain_ids(client, "m", queries, crowding_count=1) == \
            _oracle_ids(x, ids, queries, 5, tags=tags, crowding=1)

        # The same examples uploaded afresh answer alike.
        write_jsonl(tmp_path / "all.jsonl", [
            {"id": i, "embedding": v.tolist(), **({"crowding_tag": t} if t else {}),
             **({"restricts": [{"namespace": "color", "allow": ["red"]}]} if r else {})}
            for i, v, t, r in zip(ids, x, tags, red)])
        client.wait(client.upload_model(model_payload("", [str(tmp_path / "all.jsonl")], config), "fresh"),
                    timeout=120)
        for kwargs in ({}, {"restrictions": [{"namespace": "color", "allow": ["red"]}]}, {"crowding_count": 1}):
            assert _explain_ids(client, "m", queries, **kwargs) == _explain_ids(client, "fresh", queries, **kwargs)
    assert len(os.listdir(store / "models" / "m" / "builds")) == 2       # the new build and the one it replaced


def _replica(tmp_path, name, store) -> ServerProcess:
    return ServerProcess(store, str(tmp_path / f"{name}.log"), cache_dir=str(tmp_path / f"{name}-cache"),
                         store_poll_seconds=0.3, heartbeat_seconds=0.3).start()


def test_replicas_switch_to_the_update_without_a_gap_and_updates_are_serialised(tmp_path):
    """Two daemons on one store, a compressed (treeAh) index: B answers throughout
    while A updates; B then serves the new version; a second update while one runs
    is refused; a retrain clears the count of examples added since training."""
    store = str(tmp_path / "store")
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(30, 16)) * 3
    base = (centers[rng.integers(0, 30, 6000)] + rng.normal(size=(6000, 16))).astype(np.float32)
    np.save(tmp_path / "base.npy", base)
    added = (centers[rng.integers(0, 30, 400)] + rng.normal(size=(400, 16))).astype(np.float32)
    write_jsonl(tmp_path / "add.jsonl", [{"id": f"n{i}", "embedding": v.tolist(),
                                          "restricts": [{"namespace": "batch", "allow": ["two"]}]}
                                         for i, v in enumerate(added)])
    big = np.random.default_rng(2).normal(size=(100_000, 16)).astype(np.float32)
    np.save(tmp_path / "big.npy", big)
    config = {"config": {"dimensions": 16, "approximateNeighborsCount": 2000, "distanceMeasureType":
                         "SQUARED_L2_DISTANCE", "algorithmConfig": {"treeAhConfig": {
                             "leafNodeEmbeddingCount": 200, "leafNodesToSearchPercent": 100}}}}
    queries = added[:3] + 0.01
    a, b = _replica(tmp_path, "a", store), _replica(tmp_path, "b", store)
    errors, answers, stop = [], [], threading.Event()
    try:
        with a.client() as on_a, b.client() as on_b:
            model = on_a.wait(on_a.upload_model(model_payload("", [str(tmp_path / "base.npy")], config), "shared"),
                              timeout=180)
            assert model.index_info.index_type.endswith("x4fs") and model.index_info.mapped_bytes == 6000 * 16 * 4
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    _explain_ids(on_b, "shared", queries)
                    break
                except grpc.RpcError:
                    time.sleep(0.2)

            def hammer():
                with b.client() as client:
                    while not stop.is_set():
                        try:
                            answers.append(_explain_ids(client, "shared", queries[:1], k=3))
                        except grpc.RpcError as e:
                            errors.append(e.code())

            thread = threading.Thread(target=hammer)
            thread.start()
            op = on_a.update_explanation_dataset("shared", uris=[str(tmp_path / "add.jsonl")],
                                                 remove_ids=[str(i) for i in range(100)])
            result = _update_result(on_a, op)
            assert (result.examples_added, result.examples_removed) == (400, 100)
            info = result.model.index_info
            assert (info.example_count, info.examples_added_since_training) == (6300, 400)
            assert not info.retrain_recommended                        # 400 / 6300 < 0.3
            deadline = time.monotonic() + 20                         # B's next poll loads the new build
            while time.monotonic() < deadline and _explain_ids(on_b, "shared", queries, k=1) != [["n0"], ["n1"], ["n2"]]:
                time.sleep(0.1)
            stop.set()
            thread.join()
            assert errors == [] and len(answers) > 10                  # no gap while B switched
            two = [{"namespace": "batch", "allow": ["two"]}]
            x = np.concatenate([base[100:], added])
            ids = [str(i) for i in range(100, 6000)] + [f"n{i}" for i in range(400)]
            admissible = np.array([i.startswith("n") for i in ids])
            for client in (on_a, on_b):                                # both replicas, the new version
                assert _explain_ids(client, "shared", queries, k=5, restrictions=two) == \
                    _oracle_ids(x, ids, queries, 5, admissible=admissible)
                assert _explain_ids(client, "shared", queries, k=5) == _oracle_ids(x, ids, queries, 5)

            # One update of a model at a time, whichever replica is asked.
            slow = on_a.update_explanation_dataset("shared", uris=[str(tmp_path / "big.npy")])
            with pytest.raises(grpc.RpcError) as e:
                on_b.update_explanation_dataset("shared", remove_ids=["200"])
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and slow.name in e.value.details()
            with pytest.raises(grpc.RpcError) as e:
                on_b.delete_model("shared")
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            grown = _update_result(on_a, slow, timeout=300).model.index_info
            assert grown.example_count == 106_300 and grown.retrain_recommended

            retrained = _update_result(on_b, on_b.update_explanation_dataset("shared", retrain=True), timeout=300)
            assert retrained.model.index_info.examples_added_since_training == 0
            assert not retrained.retrain_recommended and retrained.model.index_info.example_count == 106_300
            # The store keeps the new build and the one it replaced, and only the segments they read.
            folder = os.path.join(store, "models", "shared")
            builds = sorted(os.listdir(os.path.join(folder, "builds")))
            current = json.loads(open(os.path.join(folder, "model.json")).read())["build_id"]
            assert len(builds) == 2 and current in builds
            wanted = {s["name"] + ".npy" for b in builds for s in json.loads(
                open(os.path.join(folder, "builds", b, "meta.json")).read())["segments"]}
            assert set(os.listdir(os.path.join(folder, "segments"))) == wanted
            assert len(wanted) == 4             # the retrained build's one segment, the three it replaced
    finally:
        stop.set()
        a.kill()
        b.kill()


def test_an_update_under_the_thread_runner_saves_the_same_layout(start_server, tmp_path):
    """--build-runner thread runs the update's recipe in the serving process; it saves
    the same files (the new segment named after its build) and answers as the oracle."""
    store = tmp_path / "store"
    server = start_server(store=str(store), build_runner="thread")
    rng = np.random.default_rng(3)
    base = rng.normal(size=(5000, D)).astype(np.float32)
    np.save(tmp_path / "base.npy", base)
    added = rng.normal(size=(50, D)).astype(np.float32)
    np.save(tmp_path / "added.npy", added)                                # ids 5000..5049
    config = {"config": {"dimensions": D, "approximateNeighborsCount": 6000, "distanceMeasureType":
                         "SQUARED_L2_DISTANCE", "algorithmConfig": {"treeAhConfig": {
                             "leafNodeEmbeddingCount": 500, "leafNodesToSearchPercent": 100}}}}
    queries = rng.normal(size=(4, D)).astype(np.float32)
    with server.client() as client:
        client.wait(client.upload_model(model_payload("", [str(tmp_path / "base.npy")], config), "t"), timeout=120)
        op = client.update_explanation_dataset("t", uris=[str(tmp_path / "added.npy")], remove_ids=["0", "1"])
        assert json.loads(json.dumps(str(op.metadata)))                   # metadata is set
        result = _update_result(client, op)
        assert (result.examples_added, result.examples_removed) == (50, 2)
        meta = client.get_operation(op.name)
        from explaind.client import upload_metadata
        assert upload_metadata(meta).build_runner == "thread"
        x = np.concatenate([base[2:], added])
        ids = [str(i) for i in range(2, 5050)]
        assert _explain_ids(client, "t", queries) == _oracle_ids(x, ids, queries, 5)
    current = json.loads((store / "models" / "t" / "model.json").read_text())["build_id"]
    assert f"{current}.npy" in os.listdir(store / "models" / "t" / "segments")
