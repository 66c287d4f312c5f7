"""Builds on a real Ray runtime: a local Ray cluster of 2 CPUs, started once for
the module (Ray's start-up is slow), and real daemons that reach it through
--ray-address. The Ray runner's answers must equal the local runner's; a
cancel must stop the Ray work and publish nothing."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from google.rpc import code_pb2

from explaind.client import OperationError
from explaind.v1 import model_service_pb2
from tests import models as tfmodels
from tests.integration.helpers import model_payload, neighbor_distances, neighbor_ids, search_config, \
    wait_for_embedding, write_jsonl

ray = pytest.importorskip("ray", reason="ray is in the test extra")
RUNNER_LABEL = "explaind.dev/build-runner"


@pytest.fixture(scope="module")
def ray_address():
    ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False, log_to_driver=False,
             namespace="explaind-tests")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _metadata(op) -> model_service_pb2.UploadModelOperationMetadata:
    meta = model_service_pb2.UploadModelOperationMetadata()
    op.metadata.Unpack(meta)
    return meta


def _records(x: np.ndarray, first: int, with_extras: bool) -> list[dict]:
    out = []
    for i, row in enumerate(x):
        record = {"features": row.tolist()}
        if with_extras:
            record["id"] = f"a{first + i}"
            record["restricts"] = [{"namespace": "color", "allow": ["red" if i % 3 else "blue"]}]
            record["crowding_tag"] = f"t{i % 7}"
        out.append(record)
    return out


def test_ray_builds_what_the_local_runner_builds(start_server, ray_address, tmp_path):
    path = tfmodels.tabular_embedding_model(str(tmp_path / "model"), n_features=8, latent_dim=16)
    x = tfmodels.random_inputs(500, (8,), seed=4)
    # Two files: the second one's examples get their positions as ids (300..499), which only
    # come out right when each file's first position is known to the workers reading it.
    first = write_jsonl(tmp_path / "part-0.jsonl", _records(x[:300], 0, with_extras=True))
    second = write_jsonl(tmp_path / "part-1.jsonl", _records(x[300:], 300, with_extras=False))
    server = start_server(ray_address=ray_address, ray_workers=2, ray_batch_size=64, embed_batch_size=64)
    payload = model_payload(path, [first, second], search_config(16, "SQUARED_L2_DISTANCE", brute_force_index=False,
                                                                 leaf_count=50, leaf_percent=50),
                            latent="embedding", neighbor_count=8)
    with server.client() as client:
        local_op = client.upload_model(payload, model_id="on-local")
        payload["labels"] = {RUNNER_LABEL: "ray"}
        ray_op = client.upload_model(payload, model_id="on-ray")
        assert _metadata(local_op).build_runner == "local" and _metadata(ray_op).build_runner == "ray"
        on_local = client.wait(local_op, timeout=300)
        on_ray = client.wait(ray_op, timeout=300)
        assert on_ray.index_info.example_count == on_local.index_info.example_count == 500
        assert on_ray.index_info.index_type == on_local.index_info.index_type
        assert _metadata(client.get_operation(ray_op.name)).build_runner == "ray"

        queries = [{"features": q.tolist()} for q in tfmodels.random_inputs(6, (8,), seed=11)]
        for kwargs in ({}, {"crowding_count": 2},
                       {"restrictions": [{"namespace": "color", "allow": ["blue"]}], "neighbor_count": 5}):
            a = client.explain("on-local", queries, **kwargs)
            b = client.explain("on-ray", queries, **kwargs)
            for ea, eb in zip(a.explanations, b.explanations):
                assert neighbor_ids(ea) == neighbor_ids(eb), kwargs
                np.testing.assert_allclose(neighbor_distances(ea), neighbor_distances(eb), rtol=1e-5, atol=1e-5)
                assert neighbor_ids(ea), kwargs
        # Ids from both files: explicit ones and positions.
        everything = client.explain("on-ray", queries, neighbor_count=500)
        ids = {i for e in everything.explanations for i in neighbor_ids(e)}
        assert ids == {f"a{i}" for i in range(300)} | {str(i) for i in range(300, 500)}

        # A bad record fails the operation with the field the local runner names.
        bad = _records(x[:20], 0, with_extras=False)
        bad[13]["restricts"] = [{"namespace": "color", "allow": "red"}]
        payload["explanationSpec"]["parameters"]["examples"]["gcsSource"]["uris"] = [
            write_jsonl(tmp_path / "bad.jsonl", bad)]
        with pytest.raises(OperationError) as err:
            client.wait(client.upload_model(payload, model_id="bad-on-ray"), timeout=300)
        assert err.value.status.code == code_pb2.INVALID_ARGUMENT
        assert "examples[13].restricts[0].allow" in err.value.status.message
        assert "EMBEDDING" in err.value.status.message


def _ray_actor_processes() -> list[int]:
    """Pids of live processes titled as our embedding actors (Ray names them ray::EmbedShards...)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"EmbedShards" in f.read():
                    out.append(int(pid))
        except OSError:
            continue
    return out


def test_cancel_stops_the_ray_work(start_server, ray_address, tmp_path):
    # About 0.2 s a model call on any machine: 250 calls on 2 actors outlast the checks below.
    path = tfmodels.slow_embedding_model(str(tmp_path / "model"), n_features=8, latent_dim=16, seconds_per_batch=0.2)
    x = tfmodels.random_inputs(4000, (8,), seed=1)
    data = write_jsonl(tmp_path / "big.jsonl", [{"features": r.tolist()} for r in x])
    store = str(tmp_path / "store")
    server = start_server(store=store, build_runner="ray", ray_address=ray_address, ray_workers=2,
                          ray_batch_size=16, heartbeat_seconds=0.2)
    with server.client() as client:
        op = client.upload_model(model_payload(path, [data], search_config(16, "DOT_PRODUCT_DISTANCE")),
                                 model_id="cancelled-on-ray")
        assert wait_for_embedding(client, op).build_runner == "ray"
        assert _ray_actor_processes(), "the embedding actors run"
        client.cancel_operation(op.name)
        done = client.wait_operation(op.name, timeout=60)
        assert done.done and done.error.code == code_pb2.CANCELLED and "EMBEDDING" in done.error.message, done
        assert [m.name for m in client.list_models()] == []
    # The Ray work stopped: the actors are gone and the cluster's CPUs are free again.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (_ray_actor_processes() or ray.available_resources().get("CPU", 0) < 2):
        time.sleep(0.5)
    assert _ray_actor_processes() == []
    assert ray.available_resources().get("CPU", 0) == 2
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(store, "models")) for f in files]
    assert leftovers == []


def test_an_update_on_ray_answers_as_a_fresh_build(start_server, ray_address, tmp_path):
    """A compressed (treeAh) model uploaded with the ray label is updated on Ray: its
    added examples are embedded by the actors (ids continue the model's default
    numbering), its new segment is saved by the build process and published. Searched
    exhaustively, it answers exactly as a fresh build of the same examples."""
    path = tfmodels.tabular_embedding_model(str(tmp_path / "model"), n_features=8, latent_dim=16)
    x = tfmodels.random_inputs(5200, (8,), seed=6)
    base = write_jsonl(tmp_path / "base.jsonl", _records(x[:5000], 0, with_extras=True))
    no_ids = write_jsonl(tmp_path / "more.jsonl", _records(x[5000:5100], 0, with_extras=False))   # ids 5000..5099
    with_ids = write_jsonl(tmp_path / "named.jsonl", _records(x[5100:], 5100, with_extras=True))
    config = search_config(16, "SQUARED_L2_DISTANCE", brute_force_index=False, leaf_count=500, leaf_percent=100)
    config["config"]["approximateNeighborsCount"] = 6000          # every candidate re-ranked: exact answers
    store = str(tmp_path / "store")
    server = start_server(store=store, ray_address=ray_address, ray_workers=2, ray_batch_size=64,
                          embed_batch_size=64)
    payload = model_payload(path, [base], config, latent="embedding", neighbor_count=8)
    payload["labels"] = {RUNNER_LABEL: "ray"}
    removed = [f"a{i}" for i in range(0, 5000, 50)]
    with server.client() as client:
        model = client.wait(client.upload_model(payload, model_id="updated"), timeout=300)
        assert model.index_info.index_type.endswith("x4fs")
        op = client.update_explanation_dataset("updated", uris=[no_ids, with_ids], remove_ids=removed)
        meta = _metadata(op)
        assert meta.build_runner == "ray" and meta.base_build
        updated = client.wait(op, timeout=300)
        assert updated.index_info.example_count == 5100 and updated.index_info.examples_added_since_training == 200
        assert _metadata(client.get_operation(op.name)).build_runner == "ray"

        # The same examples, uploaded afresh on the local runner.
        kept = [r for i, r in enumerate(_records(x[:5000], 0, with_extras=True)) if f"a{i}" not in removed]
        extra = _records(x[5000:5100], 0, with_extras=False)
        for i, record in enumerate(extra):
            record["id"] = str(5000 + i)
        fresh_data = write_jsonl(tmp_path / "fresh.jsonl", kept + extra + _records(x[5100:], 5100, with_extras=True))
        fresh = model_payload(path, [fresh_data], config, latent="embedding", neighbor_count=8)
        assert client.wait(client.upload_model(fresh, model_id="fresh"), timeout=300).index_info.example_count == 5100

        queries = [{"features": q.tolist()} for q in tfmodels.random_inputs(6, (8,), seed=12)]
        for kwargs in ({}, {"crowding_count": 2},
                       {"restrictions": [{"namespace": "color", "allow": ["blue"]}], "neighbor_count": 5}):
            a = client.explain("updated", queries, **kwargs)
            b = client.explain("fresh", queries, **kwargs)
            for ea, eb in zip(a.explanations, b.explanations):
                assert neighbor_ids(ea) and neighbor_ids(ea) == neighbor_ids(eb), kwargs
                np.testing.assert_allclose(neighbor_distances(ea), neighbor_distances(eb), rtol=1e-5, atol=1e-5)
        near = client.explain("updated", [{"features": r.tolist()} for r in x[5000:5003]], neighbor_count=1)
        assert [neighbor_ids(e) for e in near.explanations] == [["5000"], ["5001"], ["5002"]]
    # The store: the two builds and the segments they read; Ray's shards are gone.
    folder = os.path.join(store, "models", "updated")
    assert len(os.listdir(os.path.join(folder, "builds"))) == 2
    assert len(os.listdir(os.path.join(folder, "segments"))) == 2
    assert not [d for d, _, _ in os.walk(folder) if d.endswith("shards")]


def test_a_batch_job_on_ray_writes_what_the_local_runner_writes(start_server, ray_address, tmp_path):
    """The same batch job (feature attributions, two input files, a bad row) on the local runner
    and on Ray actors: equal rows in the same order, the same errors, and the Ray job's rows
    split over parts by actor batch."""
    import json

    from tests import attr_models

    server = start_server(ray_address=ray_address, ray_workers=2, ray_batch_size=16, batch_size=8)
    x = tfmodels.random_inputs(60, (6,), seed=21)
    first = write_jsonl(tmp_path / "a.jsonl", [{"features": r.tolist()} for r in x[:25]])
    (tmp_path / "b.jsonl").write_text("\n".join([json.dumps({"features": r.tolist()}) for r in x[25:40]] +
                                                ['{"features": [1]}'] +
                                                [json.dumps({"features": r.tolist()}) for r in x[40:]]) + "\n")
    model = {"displayName": "mlp", "artifactUri": attr_models.mlp_model(), "explanationSpec": {
        "parameters": {"integratedGradientsAttribution": {"stepCount": 8}, "topK": 2},
        "metadata": {"inputs": {"features": {"inputTensorName": "features"}},
                     "outputs": {"scores": {"outputTensorName": "output_0"}}}}}
    outputs = {}
    with server.client() as client:
        client.wait(client.upload_model(model, model_id="mlp"), timeout=300)
        for runner in ("local", "ray"):
            op = client.batch_explain("mlp", [first, str(tmp_path / "b.jsonl")], str(tmp_path / runner),
                                      labels={RUNNER_LABEL: runner})
            response = client.wait_batch(op, timeout=600)
            meta = client.get_operation(op.name)
            outputs[runner] = (response, [json.loads(line) for name in response.result_files
                                          for line in open(os.path.join(response.output_directory, name))],
                               [json.loads(line) for name in response.error_files
                                for line in open(os.path.join(response.output_directory, name))])
            assert _batch_runner(meta) == runner
    (local, local_rows, local_errors), (on_ray, ray_rows, ray_errors) = outputs["local"], outputs["ray"]
    assert (local.rows_succeeded, local.rows_failed) == (on_ray.rows_succeeded, on_ray.rows_failed) == (60, 1)
    assert len(on_ray.result_files) > 1                       # parts from several actor batches, in order
    assert [r["instance"] for r in ray_rows] == [r["instance"] for r in local_rows] == \
        [{"features": r.tolist()} for r in x]
    assert ray_errors == local_errors and "b.jsonl line 16" in local_errors[0]["error"]["message"]
    for a, b in zip(local_rows, ray_rows):
        assert a["prediction"] == pytest.approx(b["prediction"], rel=1e-5, abs=1e-6)
        for p, q in zip(a["explanation"]["attributions"], b["explanation"]["attributions"]):
            assert p["outputIndex"] == q["outputIndex"]
            np.testing.assert_allclose(p["featureAttributions"]["features"], q["featureAttributions"]["features"],
                                       rtol=1e-5, atol=1e-6)


def _batch_runner(op) -> str:
    from explaind.v1 import batch_service_pb2

    meta = batch_service_pb2.BatchExplainOperationMetadata()
    op.metadata.Unpack(meta)
    return meta.runner
