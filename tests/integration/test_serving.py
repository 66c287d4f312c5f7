"""Serving under load through a real daemon: batching, metrics, health,
reflection, limits and SIGTERM draining."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request

import grpc
import pytest
import numpy as np
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from explaind.v1 import explanation_pb2, prediction_service_pb2, prediction_service_pb2_grpc
from tests.integration.helpers import brute_force, model_payload, search_config

D = 16


def _explain_request(vector, k=5):
    request = prediction_service_pb2.ExplainRequest(name="models/load")
    request.instances.append(json_format.ParseDict(vector.tolist(), struct_pb2.Value()))
    request.explanation_spec_override.examples_override.data_format = \
        explanation_pb2.ExamplesOverride.DataFormat.EMBEDDINGS
    request.explanation_spec_override.examples_override.neighbor_count = k
    return request


def _scrape(port) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _upload(server, tmp_path, n=5000):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "e.npy", rng.normal(size=(n, D)).astype(np.float32))
    with server.client() as client:
        client.wait(client.upload_model(model_payload("", [str(tmp_path / "e.npy")],
                                                      search_config(D, "SQUARED_L2_DISTANCE")),
                                        model_id="load"), timeout=120)
    return rng.normal(size=(200, D)).astype(np.float32)


async def _concurrent(target, requests, timeout=60):
    async with grpc.aio.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return await asyncio.gather(*(stub.Explain(r, timeout=timeout) for r in requests),
                                    return_exceptions=True)


def test_concurrent_calls_are_batched_and_counted(start_server, tmp_path):
    server = start_server(max_queue_delay_ms=20, max_batch_size=64)
    queries = _upload(server, tmp_path)
    requests = [_explain_request(q) for q in queries]
    with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        sequential = [stub.Explain(r, timeout=30) for r in requests]
    concurrent = asyncio.run(_concurrent(server.target, requests))
    assert all(not isinstance(r, Exception) for r in concurrent), [r for r in concurrent if isinstance(r, Exception)][:1]
    # Same neighbors; distances equal to float32 rounding (a batch may be scanned by
    # another kernel than a single query: BLAS product vs FAISS's scan).
    for c, s in zip(concurrent, sequential):
        assert [n.neighbor_id for n in c.explanations[0].neighbors] == \
            [n.neighbor_id for n in s.explanations[0].neighbors]
        np.testing.assert_allclose([n.neighbor_distance for n in c.explanations[0].neighbors],
                                   [n.neighbor_distance for n in s.explanations[0].neighbors], rtol=1e-5)

    metrics = _scrape(server.metrics_port)
    sizes = [s for s in metrics["explaind_batch_size"].samples
             if s.name.endswith("_count") and s.labels.get("model") == "load"]
    sums = [s for s in metrics["explaind_batch_size"].samples
            if s.name.endswith("_sum") and s.labels.get("model") == "load"]
    batches, items = sum(s.value for s in sizes), sum(s.value for s in sums)
    assert items >= 400 and batches < items, (batches, items)       # some batch held more than one call
    handled = {(s.labels["grpc_method"], s.labels["grpc_code"]): s.value
               for s in metrics["grpc_server_handled"].samples if s.name == "grpc_server_handled_total"}
    assert handled[("Explain", "OK")] == 400
    started = {s.labels["grpc_method"]: s.value for s in metrics["grpc_server_started"].samples
               if s.name == "grpc_server_started_total"}
    assert started["Explain"] == 400
    vectors = [s for s in metrics["explaind_index_vectors"].samples if s.labels.get("model") == "load"]
    assert vectors and vectors[0].value == 5000 and vectors[0].labels["device"] == "cpu"
    assert [s.value for s in metrics["explaind_models_loaded"].samples] == [1]


def test_full_queue_answers_resource_exhausted_at_once(start_server, tmp_path):
    server = start_server(max_queue_delay_ms=300, max_batch_size=1000, max_queued=8)
    queries = _upload(server, tmp_path, n=500)
    start = time.monotonic()
    results = asyncio.run(_concurrent(server.target, [_explain_request(q) for q in queries[:64]]))
    elapsed = time.monotonic() - start
    codes = [r.code() if isinstance(r, grpc.RpcError) else grpc.StatusCode.OK for r in results]
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert elapsed < 10
    rejected = next(r for r in results if isinstance(r, grpc.RpcError))
    assert "max" in rejected.details().lower()


def test_health_and_reflection(start_server):
    server = start_server()
    with server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "explaind.v1.PredictionService", "explaind.v1.ModelService",
                        "google.longrunning.Operations"):
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                   timeout=10))
        names = {s.name for s in responses[0].list_services_response.service}
        assert {"explaind.v1.PredictionService", "explaind.v1.ModelService",
                "google.longrunning.Operations", "grpc.health.v1.Health"} <= names


def test_sigterm_during_load_fails_no_accepted_call(start_server, tmp_path):
    server = start_server(max_queue_delay_ms=5, shutdown_grace_seconds=20)
    queries = _upload(server, tmp_path)
    results: list = []
    sent = threading.Event()

    def load():
        with server.channel() as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            futures = []
            for i in range(2000):
                futures.append(stub.Explain.future(_explain_request(queries[i % len(queries)]), timeout=30))
                if i == 200:
                    sent.set()
                time.sleep(0.0005)
            for f in futures:
                try:
                    results.append(f.result())
                except grpc.RpcError as e:
                    results.append(e)

    thread = threading.Thread(target=load)
    thread.start()
    assert sent.wait(60)
    code = server.stop(timeout=60)
    thread.join(120)
    assert code == 0, server.log_tail()
    ok = [r for r in results if not isinstance(r, grpc.RpcError)]
    failed = [r for r in results if isinstance(r, grpc.RpcError)]
    assert len(ok) >= 50, len(ok)
    assert all(len(r.explanations[0].neighbors) == 5 for r in ok)
    # A call either completed, or was refused before the application accepted it: by the
    # drain, or by the closed connection or port. Always UNAVAILABLE, which clients retry.
    # The access log shows what the application accepted.
    assert {e.code() for e in failed} <= {grpc.StatusCode.UNAVAILABLE}
    logged = [json.loads(line) for line in server.log_tail(10 ** 8).splitlines()
              if '"explaind.access"' in line and "Explain" in line]
    assert {entry["code"] for entry in logged} <= {"OK", "UNAVAILABLE"}
    assert sum(entry["code"] == "OK" for entry in logged) == len(ok)


def test_workers_share_one_port(tmp_path):
    """--workers 2: two processes serve the same port; SIGTERM stops both cleanly."""
    import os
    import re
    import signal
    import subprocess
    import sys

    port = int(subprocess.check_output([sys.executable, "-c",
                                        "import socket;s=socket.socket();s.bind(('127.0.0.1',0));"
                                        "print(s.getsockname()[1])"]).decode())
    proc = subprocess.Popen([sys.executable, "-m", "explaind.server.main", "serve", "--workers", "2", "--host",
                             "127.0.0.1", "--port", str(port), "--metrics-port", "0", "--http-port", "0", "--store",
                             str(tmp_path / "store"), "--store-poll-seconds", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    try:
        seen: list[str] = []        # stdout lines, read by a thread so a silent worker cannot hang the test
        threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True).start()
        deadline = time.monotonic() + 90
        while True:
            ready = [(int(m.group(1)), int(m.group(2))) for m in
                     (re.search(r"listening on port (\d+) \(metrics on (\d+)", line) for line in list(seen)) if m]
            if len(ready) == 2:
                break
            assert proc.poll() is None, f"workers exited: {seen}"
            assert time.monotonic() < deadline, f"workers not ready: {seen}"
            time.sleep(0.1)
        assert {p for p, _ in ready} == {port}
        from explaind.client import Client
        rng = np.random.default_rng(0)
        np.save(tmp_path / "e.npy", rng.normal(size=(50, D)).astype(np.float32))
        with Client(f"127.0.0.1:{port}") as client:
            client.wait(client.upload_model(model_payload("", [str(tmp_path / "e.npy")],
                                                          search_config(D, "DOT_PRODUCT_DISTANCE")),
                                            model_id="load"), timeout=60)
        deadline = time.monotonic() + 60      # both workers' watchers load the published model
        while not all(_scrape(m)["explaind_models_loaded"].samples[0].value == 1 for _, m in ready):
            assert time.monotonic() < deadline, "a worker never loaded the published model"
            time.sleep(0.2)
        total = 0
        for _ in range(8):
            # A fresh connection each time: the kernel picks a worker per connection.
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                response = stub.Explain(_explain_request(rng.normal(size=D).astype(np.float32)), timeout=10)
                assert len(response.explanations[0].neighbors) == 5
                total += 1
        counts = []
        for _, metrics_port in ready:
            handled = _scrape(metrics_port)["grpc_server_handled"].samples
            counts.append(sum(s.value for s in handled if s.labels.get("grpc_method") == "Explain"))
        assert sum(counts) == total
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_configured_limits_answer_clear_statuses(start_server, tmp_path):
    server = start_server(max_instances_per_request=3, max_message_bytes=64 * 1024, max_neighbor_count=20)
    queries = _upload(server, tmp_path, n=300)
    with server.client() as client:
        with pytest.raises(grpc.RpcError) as err:
            client.explain("load", [q.tolist() for q in queries[:4]], embeddings=True)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "3" in err.value.details() and "max-instances-per-request" in err.value.details()
        assert len(client.explain("load", [q.tolist() for q in queries[:3]], embeddings=True).explanations) == 3
        with pytest.raises(grpc.RpcError) as err:
            client.explain("load", [q.tolist() for q in queries[:1]], embeddings=True, neighbor_count=21)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "20" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:      # a 200 KB request against a 64 KB limit
            client.explain("load", [list(range(D)) * 800], embeddings=True)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_concurrent_calls_with_different_shapes_are_never_stacked_together(start_server, tmp_path):
    """A signature with a free dimension: examples of different lengths share a build
    batch, and calls of different lengths arrive together; each is embedded with its
    own shape, none fails for another's."""
    from tests import models as tfmodels

    path = tfmodels.variable_length_model(str(tmp_path / "model"))
    rng = np.random.default_rng(3)
    # The examples too have lengths 2 to 6, mixed within each embedding batch of the build.
    rows = [rng.normal(size=(1, 2 + i % 5)).astype(np.float32) for i in range(300)]
    examples = np.concatenate([tfmodels.variable_length_oracle(r) for r in rows])
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"x": r[0].tolist()}) + "\n" for r in rows))
    server = start_server(max_queue_delay_ms=50, max_batch_size=64)
    payload = model_payload(path, [str(data)], search_config(3, "SQUARED_L2_DISTANCE"), latent="embedding")
    queries = [rng.normal(size=(1, 2 + i % 5)).astype(np.float32) for i in range(40)]
    with server.client() as client:
        client.wait(client.upload_model(payload, model_id="load"), timeout=120)
    requests = []
    for q in queries:
        r = prediction_service_pb2.ExplainRequest(name="models/load")
        r.instances.append(json_format.ParseDict({"x": q[0].tolist()}, struct_pb2.Value()))
        requests.append(r)
    predicts = [prediction_service_pb2.PredictRequest(name="models/load", instances=r.instances) for r in requests]

    async def both():
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            return await asyncio.gather(*(stub.Explain(r, timeout=60) for r in requests),
                                        *(stub.Predict(p, timeout=60) for p in predicts), return_exceptions=True)

    results = asyncio.run(both())
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    explained, predicted = results[:len(queries)], results[len(queries):]
    for q, response, prediction in zip(queries, explained, predicted):
        latent = tfmodels.variable_length_oracle(q)[0]
        expected = np.argsort(((examples - latent) ** 2).sum(1))[:10]
        assert [n.neighbor_id for n in response.explanations[0].neighbors] == [str(i) for i in expected]
        out = json_format.MessageToDict(prediction.predictions[0])
        assert out["length"] == q.shape[1]
        np.testing.assert_allclose(out["embedding"], latent, rtol=1e-5)


def test_explain_of_model_inputs_runs_the_model_once_per_batch(start_server, tmp_path):
    """The run that embeds an Explain's instances also answers the model's outputs: per batch of rows,
    one model run and one search (the daemon's own batch counts), and the answers are the oracle's:
    the neighbors of Keras' own latent, the predictions of Keras' own model (as Predict answers them)."""
    from tests import models as tfmodels

    path = tfmodels.tabular_embedding_model(str(tmp_path / "model"))      # the latent: a layer, not an output
    examples = tfmodels.random_inputs(300, (8,), seed=1)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"features": r.tolist()}) + "\n" for r in examples))
    server = start_server()
    with server.client() as client:
        client.wait(client.upload_model(model_payload(path, [str(data)], search_config(16, "SQUARED_L2_DISTANCE"),
                                                      latent="embedding", neighbor_count=4), model_id="load"),
                    timeout=120)
        before = _scrape(server.metrics_port)
        queries = tfmodels.random_inputs(6, (8,), seed=2)
        answers = [client.explain("load", [{"features": q.tolist()} for q in queries[i:i + 2]]) for i in (0, 2, 4)]
        predicted = client.predict("load", [{"features": q.tolist()} for q in queries])
    after = _scrape(server.metrics_port)

    def count(metrics, name):
        return sum(s.value for s in metrics[name].samples
                   if s.name == f"{name}_count" and s.labels.get("model") == "load")

    assert count(after, "explaind_embedding_seconds") - count(before, "explaind_embedding_seconds") == 3
    # Three Explains (a model run and a search each) and one Predict (a model run).
    assert count(after, "explaind_batch_size") - count(before, "explaind_batch_size") == 3 * 2 + 1
    latents = tfmodels.keras_layer_latent(path, "embedding", examples)
    expected, _ = brute_force(latents, tfmodels.keras_layer_latent(path, "embedding", queries), 4,
                              "SQUARED_L2_DISTANCE")
    outputs = np.asarray(tfmodels.BUILT[path](queries))
    explained = [e for answer in answers for e in answer.explanations]
    assert [[n.neighbor_id for n in e.neighbors] for e in explained] == [[str(i) for i in row] for row in expected]
    got = [json_format.MessageToDict(p) for answer in answers for p in answer.predictions]
    np.testing.assert_allclose(got, outputs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, predicted, rtol=1e-5, atol=1e-6)


def test_request_id_comes_back_in_the_trailers_also_on_errors(start_server, tmp_path):
    server = start_server()
    queries = _upload(server, tmp_path, n=100)
    with server.channel() as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        _, call = stub.Explain.with_call(_explain_request(queries[0]), metadata=(("x-request-id", "abc-1"),),
                                         timeout=10)
        assert ("x-request-id", "abc-1") in tuple(call.trailing_metadata())
        bad = _explain_request(queries[0][:3])           # wrong dimension
        with pytest.raises(grpc.RpcError) as err:
            stub.Explain(bad, metadata=(("x-request-id", "abc-2"),), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("x-request-id", "abc-2") in tuple(err.value.trailing_metadata())
        _, call = stub.Explain.with_call(_explain_request(queries[1]), timeout=10)
        assert len(dict(call.trailing_metadata())["x-request-id"]) == 32     # made up when absent
