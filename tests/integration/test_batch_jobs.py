"""Batch explanation jobs on a real daemon (the local runner: a build process
per job), through every door: Vertex's REST JobService, Vertex's generated
gRPC client, explaind.v1's BatchService and the CLI. Each output row equals
the online answer for its instance (REST :explain and :predict); bad rows go
to the errors files and the job goes on; too many fail it; a cancelled or
failed job leaves nothing under the output prefix; a job whose replica died
is failed by the next one with its counts kept."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from google.rpc import code_pb2

from explaind.client import OperationError
from explaind.v1 import batch_service_pb2
from tests import attr_models
from tests import models as tfmodels
from tests.integration.helpers import model_payload, search_config, write_jsonl
from tests.oracles import assert_json_close
from tests.server_process import ServerProcess, pick_free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
PARENT = "projects/my-project/locations/us-central1"
FEATURES = 6
State = batch_service_pb2.JobState


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("batch")
    proc = ServerProcess(str(base / "store"), str(base / "server.log"), cache_dir=str(base / "cache"),
                         http_port=pick_free_port(), store_poll_seconds=0.5, batch_size=16).start()
    yield proc
    assert proc.stop() == 0, proc.log_tail()


@pytest.fixture(scope="module")
def data(server, tmp_path_factory):
    """An integrated-gradients MLP ("mlp"), an example-based model ("pets"), a text model whose
    single string input takes {"b64": ...} rows ("words"), and the rows to explain."""
    base = tmp_path_factory.mktemp("batch-data")
    pets_path = tfmodels.tabular_embedding_model(str(base / "pets"), n_features=FEATURES, latent_dim=8)
    examples = tfmodels.random_inputs(60, (FEATURES,), seed=5)
    pets_data = write_jsonl(base / "pets.jsonl", [{"id": f"p{i}", "features": r.tolist()}
                                                  for i, r in enumerate(examples)])
    words_path = tfmodels.text_model(str(base / "words"))
    texts = [f"text number {i} {'x' * (i % 7)}".encode() for i in range(30)]
    words_data = write_jsonl(base / "words.jsonl", [{"id": f"w{i}", "text": {"b64": base64.b64encode(t).decode()}}
                                                    for i, t in enumerate(texts)])
    with server.client() as client:
        ops = [client.upload_model({"displayName": "mlp", "artifactUri": attr_models.mlp_model(), "explanationSpec": {
            "parameters": {"integratedGradientsAttribution": {"stepCount": 10}},
            "metadata": {"inputs": {"features": {"inputTensorName": "features"}},
                         "outputs": {"scores": {"outputTensorName": "output_0"}}}}}, model_id="mlp"),
               client.upload_model(model_payload(pets_path, [pets_data], search_config(8, "SQUARED_L2_DISTANCE"),
                                                 latent="embedding", neighbor_count=5), model_id="pets"),
               client.upload_model(model_payload(words_path, [words_data], search_config(2, "SQUARED_L2_DISTANCE"),
                                                 latent="features", neighbor_count=3), model_id="words")]
        for op in ops:
            client.wait(op, timeout=300)
    rows = tfmodels.random_inputs(40, (FEATURES,), seed=9)
    return {"base": base, "rows": rows, "texts": texts}


def _http(server, method: str, path: str, body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _vertex_job(model: str, uris: list[str], prefix: str, **fields) -> dict:
    job = {"displayName": "job", "model": f"{PARENT}/models/{model}",
           "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": uris}},
           "outputConfig": {"predictionsFormat": "jsonl", "gcsDestination": {"outputUriPrefix": prefix}},
           "generateExplanation": True}
    job.update(fields)
    return job


def _wait_rest(server, name: str, timeout: float = 300) -> dict:
    end = time.monotonic() + timeout
    while True:
        status, job = _http(server, "GET", f"/v1/{name}")
        assert status == 200, job
        if job["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED") or \
                time.monotonic() > end:
            return job
        time.sleep(0.3)


def _lines(folder: str, names: list[str]) -> list[dict]:
    return [json.loads(line) for name in names for line in open(os.path.join(folder, name)).read().splitlines()]


def _files(folder: str, kind: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if f".{kind}-" in n)


def _close(got, want):
    """Equal JSON, numbers within float32's rounding (batches of another size round otherwise).
    An attribution's approximationError is the gap between its attributions' sum and the
    output's change: a difference of nearly equal float32 numbers, so an output one ulp
    apart (2.4e-7 at 2.4, from another batch's rounding) moves it by 1e-5 and more,
    relative to nothing: it is compared to 1e-4."""
    got, want = json.loads(json.dumps(got)), json.loads(json.dumps(want))
    gaps = [(g.pop("approximationError", None), w.pop("approximationError", None))
            for g, w in zip(_attributions(got), _attributions(want))]
    assert_json_close(got, want, rel=1e-5, abs_tol=1e-6)
    for g, w in gaps:
        assert (g is None) == (w is None) and (g is None or abs(g - w) <= 1e-4), (g, w)


def _attributions(answer) -> list:
    return answer.get("attributions", []) if isinstance(answer, dict) else []


def test_attribution_rows_equal_the_online_answers_and_bad_rows_go_to_errors(server, data, tmp_path):
    rows = [{"features": r.tolist()} for r in data["rows"]]
    lines = [json.dumps(r) for r in rows[:20]] + ["{not json", json.dumps({"features": [1, 2]})] + \
        [json.dumps(r) for r in rows[20:]]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    spec = {"parameters": {"integratedGradientsAttribution": {"stepCount": 20}, "topK": -1}}
    status, job = _http(server, "POST", f"/v1/{PARENT}/batchPredictionJobs", _vertex_job(
        "mlp", [str(tmp_path / "in.jsonl")], str(tmp_path / "out"), explanationSpec=spec, labels={"team": "a"}))
    assert status == 200, job
    assert job["state"] in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    assert job["name"].startswith(f"{PARENT}/batchPredictionJobs/") and job["explanationSpec"] == spec
    done = _wait_rest(server, job["name"])
    assert done["state"] == "JOB_STATE_SUCCEEDED", done
    assert done["completionStats"] == {"successfulCount": "40", "failedCount": "2"}
    assert len(done["partialFailures"]) == 2 and all(f["code"] == 3 for f in done["partialFailures"])
    folder = done["outputInfo"]["gcsOutputDirectory"]
    assert os.path.dirname(folder) == str(tmp_path / "out")
    assert os.path.basename(folder).startswith("prediction-mlp-")
    assert os.listdir(tmp_path / "out") == [os.path.basename(folder)]            # nothing staged is left
    assert _files(folder, "results") == ["explanation.results-00000-of-00001"]
    results = _lines(folder, _files(folder, "results"))
    assert [r["instance"] for r in results] == rows
    status, online = _http(server, "POST", f"/v1/{PARENT}/endpoints/mlp:explain",
                           {"instances": rows, "explanationSpecOverride": spec})
    assert status == 200, online
    status, predicted = _http(server, "POST", f"/v1/{PARENT}/endpoints/mlp:predict", {"instances": rows})
    for result, explanation, prediction in zip(results, online["explanations"], predicted["predictions"]):
        assert len(result["explanation"]["attributions"]) == 3                  # topK -1: every output
        _close(result["explanation"], explanation)
        _close(result["prediction"], prediction)
    errors = _lines(folder, _files(folder, "errors_stats"))
    assert [e["instance"] for e in errors] == ["{not json", {"features": [1, 2]}]
    assert [e["error"]["code"] for e in errors] == [3, 3]
    assert "line 21: not JSON" in errors[0]["error"]["message"]
    assert "line 22: instance.features" in errors[1]["error"]["message"]


def test_example_rows_equal_the_online_answers_with_the_job_s_neighbor_count(server, data, tmp_path):
    rows = [{"features": r.tolist()} for r in data["rows"][:25]]
    write_jsonl(tmp_path / "in.jsonl", rows)
    with server.client() as client:
        op = client.batch_explain("pets", [str(tmp_path / "in.jsonl")], str(tmp_path / "out"),
                                  override={"examplesOverride": {"neighborCount": 3}}, display_name="pets job")
        response = client.wait_batch(op, timeout=300)
        online = client.explain("pets", rows, neighbor_count=3)
        predicted = client.predict("pets", rows)
    assert (response.rows_succeeded, response.rows_failed, list(response.error_files)) == (25, 0, [])
    results = _lines(response.output_directory, list(response.result_files))
    for result, explanation, prediction in zip(results, online.explanations, predicted):
        neighbors = result["explanation"]["neighbors"]
        assert [n["neighborId"] for n in neighbors] == [n.neighbor_id for n in explanation.neighbors]
        assert len(neighbors) == 3
        for n, expected in zip(neighbors, explanation.neighbors):
            assert n.get("neighborDistance", 0.0) == pytest.approx(expected.neighbor_distance, rel=1e-5, abs=1e-6)
        _close(result["prediction"], prediction)


def test_every_input_format_gives_the_same_rows(server, data, tmp_path):
    """jsonl, csv, tf-record (plain and gzip) and file-list rows of the same instances answer alike."""
    import gzip
    import struct

    from explaind.server.builds.readers.tfrecord import masked_crc32c

    texts = data["texts"][:8]
    write_jsonl(tmp_path / "texts.jsonl", [{"b64": base64.b64encode(t).decode()} for t in texts])
    framed = b""
    for t in texts:
        length = struct.pack("<Q", len(t))
        framed += length + struct.pack("<I", masked_crc32c(length)) + t + struct.pack("<I", masked_crc32c(t))
    (tmp_path / "texts.tfrecord").write_bytes(framed)
    (tmp_path / "texts.tfrecord.gz").write_bytes(gzip.compress(framed))
    listed = []
    for i, t in enumerate(texts):
        (tmp_path / f"text-{i}.txt").write_bytes(t)
        listed.append(str(tmp_path / f"text-{i}.txt"))
    (tmp_path / "list.txt").write_text("\n".join(listed) + "\n")
    jobs = {"jsonl": "texts.jsonl", "tf-record": "texts.tfrecord", "tf-record-gzip": "texts.tfrecord.gz",
            "file-list": "list.txt"}
    outputs = {}
    with server.client() as client:
        ops = {fmt: client.batch_explain("words", [str(tmp_path / name)], str(tmp_path / f"out-{fmt}"),
                                         instances_format=fmt) for fmt, name in jobs.items()}
        for fmt, op in ops.items():
            response = client.wait_batch(op, timeout=300)
            assert (response.rows_succeeded, response.rows_failed) == (len(texts), 0), fmt
            outputs[fmt] = _lines(response.output_directory, list(response.result_files))
        # csv: the header's one column is the model's one input, each row an array of one cell.
        (tmp_path / "rows.csv").write_text("a,b,c,d,e,f\n" + "".join(
            ",".join(str(v) for v in r) + "\n" for r in data["rows"][:10].tolist()))
        csv_job = client.wait_batch(client.batch_explain("mlp", [str(tmp_path / "rows.csv")], str(tmp_path / "csv"),
                                                         instances_format="csv"), timeout=300)
        online = client.explain("mlp", [{"features": r} for r in data["rows"][:10].tolist()])
    for fmt in ("tf-record", "tf-record-gzip", "file-list"):
        assert [r["explanation"] for r in outputs[fmt]] == [r["explanation"] for r in outputs["jsonl"]], fmt
        assert [r["prediction"] for r in outputs[fmt]] == [r["prediction"] for r in outputs["jsonl"]], fmt
    assert outputs["tf-record"][0]["instance"] == {"b64": base64.b64encode(texts[0]).decode()}
    assert [len(r["explanation"]["neighbors"]) for r in outputs["jsonl"]] == [3] * len(texts)
    csv_rows = _lines(csv_job.output_directory, list(csv_job.result_files))
    assert [r["instance"] for r in csv_rows] == data["rows"][:10].tolist()
    for row, explanation in zip(csv_rows, online.explanations):
        got = row["explanation"]["attributions"][0]["featureAttributions"]["features"]
        want = json_format.MessageToDict(explanation.attributions[0].feature_attributions)["features"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_too_many_failed_rows_fail_the_job_and_publish_nothing(server, data, tmp_path):
    lines = [json.dumps({"features": r.tolist()}) for r in data["rows"][:10]] + ['{"features": "x"}'] * 5
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    with server.client() as client:
        op = client.batch_explain("mlp", [str(tmp_path / "in.jsonl")], str(tmp_path / "out"), max_failed_fraction=0.2)
        with pytest.raises(OperationError) as e:
            client.wait_batch(op, timeout=300)
        meta = batch_service_pb2.BatchExplainOperationMetadata()
        client.get_operation(op.name).metadata.Unpack(meta)
    assert e.value.status.code == code_pb2.INVALID_ARGUMENT
    assert "rows failed, more than the job allows (0.2" in e.value.status.message
    assert meta.state == State.JOB_STATE_FAILED and meta.end_time.seconds > 0
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []


def test_vertex_grpc_client_creates_lists_cancels_and_deletes(server, data, tmp_path):
    client = aiplatform_v1.JobServiceClient(
        transport=aiplatform_v1.services.job_service.transports.JobServiceGrpcTransport(
            channel=grpc.insecure_channel(server.target)))
    write_jsonl(tmp_path / "in.jsonl", [{"features": r.tolist()} for r in data["rows"][:5]])
    job = aiplatform_v1.BatchPredictionJob(json_format.ParseDict(_vertex_job(
        "mlp", [str(tmp_path / "in.jsonl")], str(tmp_path / "out"), displayName="grpc job"),
        aiplatform_v1.BatchPredictionJob.pb(aiplatform_v1.BatchPredictionJob())))
    created, other = (client.create_batch_prediction_job(parent=PARENT, batch_prediction_job=job) for _ in range(2))
    assert created.display_name == "grpc job" and created.model == f"{PARENT}/models/mlp"
    end = time.monotonic() + 300
    for name in (created.name, other.name):
        while client.get_batch_prediction_job(name=name).state != aiplatform_v1.JobState.JOB_STATE_SUCCEEDED:
            assert time.monotonic() < end
            time.sleep(0.3)
    listed = [j.name for j in client.list_batch_prediction_jobs(
        request={"parent": PARENT, "filter": 'state=JOB_STATE_SUCCEEDED AND display_name="grpc job"'})]
    assert sorted(listed) == sorted([created.name, other.name])
    pages = list(client.list_batch_prediction_jobs(request={"parent": PARENT, "page_size": 1}).pages)
    assert len(pages) >= 2 and all(len(page.batch_prediction_jobs) == 1 for page in pages)   # every page followed
    with pytest.raises(Exception) as e:                     # an ended job cannot be cancelled
        client.cancel_batch_prediction_job(name=created.name)
    assert e.value.grpc_status_code == grpc.StatusCode.FAILED_PRECONDITION
    client.delete_batch_prediction_job(name=created.name).result(timeout=30)
    with pytest.raises(Exception) as e:
        client.get_batch_prediction_job(name=created.name)
    assert e.value.grpc_status_code == grpc.StatusCode.NOT_FOUND
    for bad, code, field in (
            (dict(model=f"{PARENT}/models/nope"), grpc.StatusCode.NOT_FOUND, "batch_prediction_job.model"),
            (dict(inputConfig={"instancesFormat": "bigquery", "gcsSource": {"uris": ["/x"]}}),
             grpc.StatusCode.INVALID_ARGUMENT, "batch_prediction_job.input_config.instances_format"),
            (dict(modelParameters={"x": 1}), grpc.StatusCode.INVALID_ARGUMENT, "batch_prediction_job.model_parameters")):
        body = dict(_vertex_job("mlp", [str(tmp_path / "in.jsonl")], str(tmp_path / "out")), **bad)
        with pytest.raises(Exception) as e:
            client.create_batch_prediction_job(parent=PARENT, batch_prediction_job=aiplatform_v1.BatchPredictionJob(
                json_format.ParseDict(body, aiplatform_v1.BatchPredictionJob.pb(aiplatform_v1.BatchPredictionJob()))))
        assert e.value.grpc_status_code == code, body
        assert field in str(e.value), (field, str(e.value))


def test_cancel_leaves_no_output(server, data, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"features": r.tolist()} for r in np.tile(data["rows"], (50, 1))])
    status, job = _http(server, "POST", f"/v1beta1/{PARENT}/batchPredictionJobs", _vertex_job(
        "mlp", [str(tmp_path / "in.jsonl")], str(tmp_path / "out"), manualBatchTuningParameters={"batchSize": 4},
        explanationSpec={"parameters": {"integratedGradientsAttribution": {"stepCount": 100}, "topK": -1}}))
    assert status == 200, job
    end = time.monotonic() + 120
    while True:                           # rows are being answered: some are staged already
        _, seen = _http(server, "GET", f"/v1beta1/{job['name']}")
        if int(seen.get("completionStats", {}).get("successfulCount", 0)) >= 8 or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert seen["state"] == "JOB_STATE_RUNNING", seen
    assert os.listdir(tmp_path / "out") == [f".explaind-staging-{job['name'].rpartition('/')[2]}"]
    status, answer = _http(server, "POST", f"/v1beta1/{job['name']}:cancel", {})
    assert (status, answer) == (200, {})
    _, cancelling = _http(server, "GET", f"/v1beta1/{job['name']}")
    assert cancelling["state"] in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    done = _wait_rest(server, job["name"], timeout=60)
    assert done["state"] == "JOB_STATE_CANCELLED" and done["error"]["code"] == code_pb2.CANCELLED
    assert int(done["completionStats"]["incompleteCount"]) > 0
    assert os.listdir(tmp_path / "out") == []
    status, answer = _http(server, "POST", f"/v1beta1/{job['name']}:cancel", {})
    assert status == 400 and answer["error"]["status"] == "FAILED_PRECONDITION"
    status, listed = _http(server, "GET", f"/v1beta1/{PARENT}/batchPredictionJobs?filter=state%3DJOB_STATE_CANCELLED")
    assert [j["name"] for j in listed["batchPredictionJobs"]] == [job["name"]]
    status, answer = _http(server, "DELETE", f"/v1beta1/{job['name']}")
    assert status == 200 and answer["done"] is True
    assert _http(server, "GET", f"/v1beta1/{job['name']}")[0] == 404


def test_hostile_rest_requests_get_clean_errors(server, data, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"features": [0.0] * FEATURES}])
    good = _vertex_job("mlp", [str(tmp_path / "in.jsonl")], str(tmp_path / "out"))
    for body, field in (
            (dict(good, encryptionSpec={"kmsKeyName": "k"}), "batch_prediction_job.encryptionSpec"),
            (dict(good, unknownThing=1), "batch_prediction_job.unknownThing"),
            (dict(good, inputConfig={"instancesFormat": "jsonl", "bigquerySource": {"inputUri": "bq://x"}}),
             "batch_prediction_job.inputConfig.bigquerySource"),
            (dict(good, outputConfig={"predictionsFormat": "bigquery", "gcsDestination": {"outputUriPrefix": "/x"}}),
             "batch_prediction_job.output_config.predictions_format"),
            (dict(good, manualBatchTuningParameters={"batchSize": 10**6}),
             "batch_prediction_job.manual_batch_tuning_parameters.batch_size")):
        status, answer = _http(server, "POST", f"/v1/{PARENT}/batchPredictionJobs", body)
        assert status == 400, (body, answer)
        violations = answer["error"]["details"][0]["fieldViolations"]
        assert violations[0]["field"] == field, answer
    assert _http(server, "GET", f"/v1/{PARENT}/batchPredictionJobs/no-such-job")[0] == 404
    status, answer = _http(server, "GET", f"/v1/{PARENT}/batchPredictionJobs?pageSize=abc")
    assert status == 400 and answer["error"]["details"][0]["fieldViolations"][0]["field"] == "page_size"
    status, answer = _http(server, "GET", f"/v1/{PARENT}/batchPredictionJobs?pageToken=a")
    assert status == 400
    status, answer = _http(server, "GET", f"/v1/{PARENT}/batchPredictionJobs?filter=owner%3Dme")
    assert status == 400 and answer["error"]["details"][0]["fieldViolations"][0]["field"] == "filter"
    # explaind.v1's operations name batch jobs too; cancelling an ended one does nothing.
    with server.client() as client:
        jobs = [op for op in client.list_operations() if op.metadata.Is(
            batch_service_pb2.BatchExplainOperationMetadata.DESCRIPTOR)]
        assert jobs and all(op.done for op in jobs)
        client.cancel_operation(jobs[0].name)


def test_cli_batch_waits_with_a_progress_bar(server, data, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"features": r.tolist()} for r in data["rows"][:12]])
    result = subprocess.run([sys.executable, "-m", "explaind.server.main", "batch", "mlp", str(tmp_path / "in.jsonl"),
                             "--output", str(tmp_path / "out"), "--target", server.target, "--wait"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "12/12 rows" in result.stderr and "SUCCEEDED" in result.stderr and "[" in result.stderr
    name, _, rest = result.stdout.partition("\n")
    response = json.loads(rest)
    assert name.startswith("operations/") and response["rowsSucceeded"] == "12"
    assert os.listdir(response["outputDirectory"]) == ["explanation.results-00000-of-00001"]


def test_a_job_of_a_dead_replica_is_failed_by_the_next_with_its_counts(tmp_path, data):
    model = tfmodels.slow_embedding_model(str(tmp_path / "slow"), n_features=FEATURES, latent_dim=8,
                                          seconds_per_batch=0.3)
    examples = write_jsonl(tmp_path / "ex.jsonl", [{"features": r.tolist()} for r in data["rows"]])
    store = str(tmp_path / "store")
    first = ServerProcess(store, str(tmp_path / "a.log"), cache_dir=str(tmp_path / "a"), batch_size=2).start()
    try:
        with first.client() as client:
            client.wait(client.upload_model(model_payload(model, [examples], search_config(8, "SQUARED_L2_DISTANCE"),
                                                          latent="embedding"), model_id="slow"), timeout=300)
            write_jsonl(tmp_path / "in.jsonl", [{"features": r.tolist()} for r in data["rows"]])
            op = client.batch_explain("slow", [str(tmp_path / "in.jsonl")], str(tmp_path / "out"))
            end = time.monotonic() + 180
            while True:
                meta = batch_service_pb2.BatchExplainOperationMetadata()
                client.get_operation(op.name).metadata.Unpack(meta)
                if meta.rows_succeeded >= 4 or time.monotonic() > end:
                    break
                time.sleep(0.2)
        assert meta.state == State.JOB_STATE_RUNNING and meta.rows_succeeded >= 4
    finally:
        first.proc.kill()                 # the replica dies; its build process goes with it
        first.proc.wait(30)
    second = ServerProcess(store, str(tmp_path / "b.log"), cache_dir=str(tmp_path / "b"),
                           heartbeat_timeout_seconds=3, store_poll_seconds=0.5).start()
    try:
        with second.client() as client:
            end = time.monotonic() + 60
            while not (op := client.get_operation(op.name)).done:
                assert time.monotonic() < end, "the dead replica's job stayed RUNNING"
                time.sleep(0.3)
        ended = batch_service_pb2.BatchExplainOperationMetadata()
        op.metadata.Unpack(ended)
        assert ended.state == State.JOB_STATE_FAILED and op.error.code == code_pb2.ABORTED
        assert "stopped sending heartbeats" in op.error.message
        assert ended.rows_succeeded >= meta.rows_succeeded and ended.rows_total == len(data["rows"])
        assert os.listdir(tmp_path / "out") == []             # its staged rows are gone
    finally:
        assert second.stop() == 0, second.log_tail()


def test_the_vertex_sdk_runs_waits_for_and_cancels_batch_prediction_jobs(server, data, tmp_path):
    """google-cloud-aiplatform's own BatchPredictionJob over the REST port, as a Vertex user runs it."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    aiplatform.init(project="my-project", location="us-central1", api_endpoint=f"http://127.0.0.1:{server.http_port}",
                    credentials=AnonymousCredentials(), api_transport="rest")
    rows = [{"features": r.tolist()} for r in data["rows"][:10]]
    write_jsonl(tmp_path / "in.jsonl", rows)
    parameters = aiplatform.explain.ExplanationParameters({"integrated_gradients_attribution": {"step_count": 5}})
    job = aiplatform.BatchPredictionJob.create(
        job_display_name="sdk job", model_name="mlp", instances_format="jsonl", gcs_source=[str(tmp_path / "in.jsonl")],
        gcs_destination_prefix=str(tmp_path / "out"), generate_explanation=True, explanation_parameters=parameters,
        labels={"kind": "ig"}, sync=False)
    job.wait_for_resource_creation()
    assert job.resource_name.startswith(f"{PARENT}/batchPredictionJobs/")
    job.wait()
    assert job.state == aiplatform.gapic.JobState.JOB_STATE_SUCCEEDED
    assert job.completion_stats.successful_count == 10
    folder = job.output_info.gcs_output_directory
    results = _lines(folder, _files(folder, "results"))
    with server.client() as client:
        online = client.explain("mlp", rows, override={"parameters": {"integratedGradientsAttribution": {"stepCount": 5}}})
    for result, explanation in zip(results, online.explanations):
        got = result["explanation"]["attributions"][0]["featureAttributions"]["features"]
        want = json_format.MessageToDict(explanation.attributions[0].feature_attributions)["features"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    listed = aiplatform.BatchPredictionJob.list(filter='labels.kind="ig"')
    assert [j.resource_name for j in listed] == [job.resource_name]

    write_jsonl(tmp_path / "many.jsonl", rows * 200)
    slow = aiplatform.BatchPredictionJob.create(
        job_display_name="sdk cancel", model_name="mlp", instances_format="jsonl",
        gcs_source=[str(tmp_path / "many.jsonl")], gcs_destination_prefix=str(tmp_path / "cancelled"),
        generate_explanation=True, batch_size=2, machine_type="n1-standard-4", starting_replica_count=1,
        max_replica_count=1, explanation_parameters=aiplatform.explain.ExplanationParameters(
            {"integrated_gradients_attribution": {"step_count": 100}, "top_k": -1}), sync=False)
    slow.wait_for_resource_creation()
    slow.cancel()
    with pytest.raises(RuntimeError):          # the SDK's wait raises on a cancelled job, as on Vertex
        slow.wait()
    assert slow.state == aiplatform.gapic.JobState.JOB_STATE_CANCELLED
    assert not os.path.exists(tmp_path / "cancelled") or os.listdir(tmp_path / "cancelled") == []
    aiplatform.BatchPredictionJob(slow.resource_name).delete()     # (the cancelled object re-raises on every call)
    assert [j.resource_name for j in aiplatform.BatchPredictionJob.list(filter='display_name="sdk cancel"')] == []
