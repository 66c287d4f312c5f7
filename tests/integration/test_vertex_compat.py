"""Vertex AI users move over unchanged, against a real daemon process:

- the seed's curl flow (upload -> poll -> explain, predict) on the REST port,
  with Vertex's documented bodies and an Authorization header;
- Vertex's own generated client (google-cloud-aiplatform's
  PredictionServiceClient over a plain channel): example-based Explain with
  overrides, the endpoint mapping, v1beta1's concurrent overrides,
  attributions, Predict and errors, each equal to the explaind.v1 answer;
- the documented payloads verbatim through the CLI and the SDK.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from google.api_core import exceptions as google_exceptions
from google.cloud import aiplatform_v1, aiplatform_v1beta1
from google.protobuf import json_format, struct_pb2

from explaind.vertex.v1 import prediction_service_pb2 as ours_v1
from tests import attr_models, oracles
from tests import models as tfmodels
from tests import vertex_payloads
from tests.integration.helpers import write_jsonl
from tests.server_process import ServerProcess, pick_free_port

N, FEATURES, LATENT = 300, 8, 16
LABELS = ["Abyssinian", "Miniature Pinscher", "Bengal"]
PARENT = "projects/my-project/locations/us-central1"
# A Vertex numeric endpoint with two deployed models, the default being the first.
MAPPING = {"endpoints": {"1234567890": {"deployedModels": {"111": "pets", "222": "pets-small"}, "default": "111"}}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A real Keras model, its training set as JSONL (labels as restricts, crowding
    tags), and the oracle's latents."""
    base = tmp_path_factory.mktemp("pets")
    path = tfmodels.tabular_embedding_model(str(base / "model"), n_features=FEATURES, latent_dim=LATENT)
    x = tfmodels.random_inputs(N, (FEATURES,), seed=11)
    labels = [LABELS[i % 3] for i in range(N)]
    tags = [f"group{(i // 3) % 3}" for i in range(N)]     # independent of the label
    records = [{"id": f"pet-{i}", "features": x[i].tolist(), "restricts": [{"namespace": "label", "allow": [labels[i]]}],
                "crowding_tag": tags[i]} for i in range(N)]
    queries = tfmodels.random_inputs(3, (FEATURES,), seed=12)
    return {"path": path, "jsonl": write_jsonl(base / "instances.jsonl", records), "x": x, "labels": labels,
            "tags": tags, "latent": tfmodels.keras_layer_latent(path, "embedding", x), "queries": queries,
            "query_latent": tfmodels.keras_layer_latent(path, "embedding", queries)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("vertex")
    proc = ServerProcess(str(base / "store"), str(base / "server.log"), cache_dir=str(base / "cache"),
                         http_port=pick_free_port(), vertex_endpoints=json.dumps(MAPPING),
                         store_poll_seconds=0.5).start()
    assert proc.http_port
    yield proc
    assert proc.stop() == 0, proc.log_tail()


def _http(server, method: str, path: str, body=None, raw: bytes | None = None):
    """(status, JSON answer) of one call, as curl would make it (with an Authorization header)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json; charset=utf-8",
                                              "Authorization": "Bearer ya29.not-checked-by-explaind"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def rest_upload(server, data):
    """The seed's flow: upload with the documented body, poll the operation until done."""
    body = vertex_payloads.upload_body(data["path"], (data["jsonl"],))
    body["modelId"] = "pets"
    status, operation = _http(server, "POST", f"/v1beta1/{PARENT}/models:upload", body)
    assert status == 200, operation
    polls = [operation]
    end = time.monotonic() + 180
    while not polls[-1].get("done") and time.monotonic() < end:
        time.sleep(0.5)
        status, answer = _http(server, "GET", f"/v1beta1/{operation['name']}")
        assert status == 200, answer
        polls.append(answer)
    return operation, polls


@pytest.fixture(scope="module")
def models(server, data, rest_upload):
    """"pets" (over REST, above) and "pets-small" (the SDK, neighborCount 3); an IG model."""
    with server.client() as client:
        small = vertex_payloads.upload_body(data["path"], (data["jsonl"],), neighbor_count=3)
        client.wait(client.upload_model(small, model_id="pets-small"), timeout=180)
        attribution = {"displayName": "linear", "artifactUri": attr_models.linear_model(),
                       "explanationSpec": {"parameters": {"integratedGradientsAttribution": {"stepCount": 20},
                                                          "topK": -1},
                                           "metadata": {"inputs": {"x": {"inputTensorName": "x"}},
                                                        "outputs": {"y": {"outputTensorName": "y"}}}}}
        client.wait(client.upload_model(attribution, model_id="linear"), timeout=180)
    return rest_upload


def _vertex(server, module=aiplatform_v1):
    """Vertex's generated client, unmodified, over a plain channel."""
    transport = module.services.prediction_service.transports.grpc.PredictionServiceGrpcTransport(
        channel=grpc.insecure_channel(server.target))
    return module.PredictionServiceClient(transport=transport)


def _vertex_request(module, endpoint: str, instances: list, override: dict | None = None, **fields):
    request = module.ExplainRequest(endpoint=endpoint, **fields)
    if override is not None:
        request.explanation_spec_override = module.ExplanationSpecOverride.wrap(json_format.ParseDict(
            override, module.ExplanationSpecOverride.pb(module.ExplanationSpecOverride())))
    # proto-plus 1.29 under protobuf 7 refuses a list of Values as a constructor argument; extend works.
    request.instances.extend([json_format.ParseDict(i, struct_pb2.Value()) for i in instances])
    return request


def _neighbors(explanations) -> list[list[tuple[str, float]]]:
    return [[(n.neighbor_id, round(n.neighbor_distance, 4)) for n in e.neighbors] for e in explanations]


def _documented_override_binds(data, query_latent) -> bool:
    """The override's crowding and allow-list each change the answer for this query,
    so an answer equal to the oracle's proves both were applied."""
    asked = _oracle(data, query_latent, 5, 2, vertex_payloads.ALLOWED)
    return asked != _oracle(data, query_latent, 5, 0, vertex_payloads.ALLOWED) and \
        asked != _oracle(data, query_latent, 5, 2, []) and len(asked) == 5


def _oracle(data, query_latent, k: int, crowding: int, allow: list[str]) -> list[str]:
    dist = oracles.distances(query_latent[None], data["latent"], "SQUARED_L2_DISTANCE")[0]
    clauses = [("label", allow, [])] if allow else []
    admissible = np.array([oracles.matches({"label": ({label}, set())}, clauses) for label in data["labels"]])
    return [f"pet-{j}" for j in oracles.crowded_search(dist, admissible, data["tags"], k, crowding)]


def test_rest_upload_poll_explain_predict(server, data, models):
    operation, polls = models
    assert operation["name"].startswith(f"{PARENT}/models/pets/operations/")
    assert operation["metadata"]["@type"] == \
        "type.googleapis.com/google.cloud.aiplatform.v1beta1.UploadModelOperationMetadata"
    assert "createTime" in operation["metadata"]["genericMetadata"]
    done = polls[-1]
    assert done["done"] is True and "error" not in done, done
    assert done["response"] == {"@type": "type.googleapis.com/google.cloud.aiplatform.v1beta1.UploadModelResponse",
                                "model": f"{PARENT}/models/pets", "modelVersionId": "1"}    # one version per model
    # The same operation under Vertex's other name for it.
    op_id = operation["name"].rpartition("/")[2]
    assert _http(server, "GET", f"/v1/{PARENT}/operations/{op_id}")[1]["done"] is True
    assert _http(server, "GET", f"/v1/{PARENT}/models/other/operations/{op_id}")[0] == 404

    body = vertex_payloads.explain_body(data["queries"][0].tolist())
    assert _documented_override_binds(data, data["query_latent"][0])
    status, answer = _http(server, "POST", f"/v1beta1/{PARENT}/endpoints/pets:explain", body)
    assert status == 200, answer
    assert answer["deployedModelId"] == "pets"
    got = [n["neighborId"] for n in answer["explanations"][0]["neighbors"]]
    assert got == _oracle(data, data["query_latent"][0], 5, 2, vertex_payloads.ALLOWED)
    with server.client() as client:       # the explaind.v1 answer to the same body
        v1_answer = client.explain("pets", body)
    assert [[n["neighborId"], n["neighborDistance"]] for n in answer["explanations"][0]["neighbors"]] == \
        [[n.neighbor_id, n.neighbor_distance] for n in v1_answer.explanations[0].neighbors]

    status, answer = _http(server, "POST", f"/v1/{PARENT}/endpoints/pets:predict",
                           {"instances": [{"features": data["queries"][0].tolist()}]})
    assert status == 200, answer
    expected = tfmodels.BUILT[data["path"]](data["queries"][:1]).numpy()[0]
    np.testing.assert_allclose(answer["predictions"][0], expected, rtol=1e-4, atol=1e-5)
    assert answer["model"] == f"{PARENT}/models/pets" and answer["deployedModelId"] == "pets"


def test_vertex_client_explain_with_overrides_equals_explaind_v1(server, data, models):
    body = vertex_payloads.explain_body(data["queries"][1].tolist())
    instances = body["instances"] + [{"features": q.tolist()} for q in data["queries"][2:]]
    override = body["explanation_spec_override"]
    request = _vertex_request(aiplatform_v1, f"{PARENT}/endpoints/pets", instances, override)
    response = _vertex(server).explain(request=request, metadata=[
        ("x-goog-user-project", "my-project"), ("x-goog-request-reason", "migration test")])
    assert response.deployed_model_id == "pets"
    with server.client() as client:
        expected = client.explain("pets", {"instances": instances, "explanation_spec_override": override})
    assert _neighbors(response.explanations) == _neighbors(expected.explanations)
    for explanation, latent in zip(response.explanations, data["query_latent"][1:]):
        assert _documented_override_binds(data, latent)
        assert [n.neighbor_id for n in explanation.neighbors] == \
            _oracle(data, latent, 5, 2, vertex_payloads.ALLOWED)


def test_vertex_client_endpoint_mapping_chooses_the_deployed_model(server, data, models):
    client = _vertex(server)
    instance = {"features": data["queries"][0].tolist()}
    endpoint = f"{PARENT}/endpoints/1234567890"
    default = client.explain(request=_vertex_request(aiplatform_v1, endpoint, [instance]))
    assert default.deployed_model_id == "111" and len(default.explanations[0].neighbors) == 10   # "pets"
    small = client.explain(request=_vertex_request(aiplatform_v1, endpoint, [instance], deployed_model_id="222"))
    assert small.deployed_model_id == "222" and len(small.explanations[0].neighbors) == 3      # "pets-small"
    assert _neighbors(small.explanations)[0] == _neighbors(default.explanations)[0][:3]
    with pytest.raises(google_exceptions.NotFound, match="deployed model"):
        client.explain(request=_vertex_request(aiplatform_v1, endpoint, [instance], deployed_model_id="333"))


def test_vertex_v1beta1_explain_and_concurrent_overrides(server, data, models):
    client = _vertex(server, aiplatform_v1beta1)
    request = _vertex_request(aiplatform_v1beta1, f"{PARENT}/endpoints/pets", [{"features": data["queries"][0].tolist()}])
    request.concurrent_explanation_spec_override["three"] = aiplatform_v1beta1.ExplanationSpecOverride(
        examples_override=aiplatform_v1beta1.ExamplesOverride(neighbor_count=3))
    response = client.explain(request=request)
    assert len(response.explanations[0].neighbors) == 10
    three = response.concurrent_explanations["three"].explanations
    assert _neighbors(three)[0] == _neighbors(response.explanations)[0][:3]


def test_vertex_client_attributions_equal_explaind_v1(server, models):
    x = [[1.0, 2.0, -3.0, 0.5], [0.0, 1.0, 1.0, 1.0]]
    instances = [{"x": row} for row in x]
    override = {"parameters": {"integratedGradientsAttribution": {"stepCount": 30}}}
    response = _vertex(server).explain(request=_vertex_request(aiplatform_v1, f"{PARENT}/endpoints/linear",
                                                               instances, override))
    with server.client() as client:
        expected = client.explain("linear", instances, override=override)
    assert response.deployed_model_id == "linear"
    w = attr_models.LINEAR_WEIGHTS
    for got, want in zip(response.explanations, expected.explanations):
        assert len(got.attributions) == len(want.attributions) == w.shape[1]
        for vertex_attribution, attribution in zip(got.attributions, want.attributions):
            mine = json_format.MessageToDict(attribution)
            mine.pop("warnings", None)
            mine.pop("images", None)
            assert json_format.MessageToDict(type(vertex_attribution).pb(vertex_attribution)) == mine


def test_explain_answers_carry_the_predictions(server, data, models):
    """ExplainResponse.predictions: the model's outputs as Predict answers them, on every surface and
    for both kinds of explanation (the Vertex notebooks read them beside the explanations)."""
    instances = [{"features": q.tolist()} for q in data["queries"][:2]]
    expected = tfmodels.BUILT[data["path"]](data["queries"][:2]).numpy()
    status, answer = _http(server, "POST", f"/v1/{PARENT}/endpoints/pets:explain", {"instances": instances})
    assert status == 200, answer
    np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-4, atol=1e-5)
    with server.client() as client:
        mine = client.explain("pets", instances)
    np.testing.assert_allclose([json_format.MessageToDict(p) for p in mine.predictions], expected, rtol=1e-4, atol=1e-5)
    x = np.array([1.0, 2.0, -3.0, 0.5])
    response = _vertex(server).explain(request=_vertex_request(aiplatform_v1, f"{PARENT}/endpoints/linear",
                                                               [{"x": x.tolist()}]))
    np.testing.assert_allclose(list(response.predictions[0]), x @ attr_models.LINEAR_WEIGHTS + attr_models.LINEAR_BIAS,
                               rtol=1e-5)


def test_vertex_client_predict_equals_explaind_v1(server, data, models):
    instances = [{"features": q.tolist()} for q in data["queries"]]
    response = _vertex(server).predict(endpoint=f"{PARENT}/endpoints/pets", instances=instances)
    with server.client() as client:
        expected = client.predict("pets", instances)
    got = [list(p) for p in response.predictions]
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-6)
    assert response.deployed_model_id == "pets" and response.model == f"{PARENT}/models/pets"
    attribution_predictions = _vertex(server).predict(endpoint=f"{PARENT}/endpoints/linear",
                                                      instances=[{"x": [1.0, 2.0, -3.0, 0.5]}])
    assert len(attribution_predictions.predictions) == 1


def test_vertex_client_errors(server, data, models):
    client = _vertex(server)
    instance = {"features": data["queries"][0].tolist()}
    with pytest.raises(google_exceptions.NotFound, match="nosuchmodel"):
        client.explain(request=_vertex_request(aiplatform_v1, f"{PARENT}/endpoints/nosuchmodel", [instance]))
    with pytest.raises(google_exceptions.NotFound):
        client.predict(endpoint=f"{PARENT}/endpoints/987654321", instances=[instance])
    with pytest.raises(google_exceptions.InvalidArgument, match="endpoint"):
        client.explain(request=_vertex_request(aiplatform_v1, "endpoints/pets", [instance]))
    with pytest.raises(google_exceptions.InvalidArgument, match="return_embeddings"):
        client.explain(request=_vertex_request(aiplatform_v1, f"{PARENT}/endpoints/pets", [instance],
                                               {"examplesOverride": {"returnEmbeddings": True}}))
    with pytest.raises(google_exceptions.InvalidArgument, match="parameters"):
        client.predict(endpoint=f"{PARENT}/endpoints/pets", instances=[instance], parameters={"threshold": 0.5})
    with pytest.raises(google_exceptions.InvalidArgument, match="neighbor_count"):
        client.explain(request=_vertex_request(aiplatform_v1, f"{PARENT}/endpoints/pets", [instance],
                                               {"examplesOverride": {"neighborCount": 100000}}))
    # explaind.v1 refuses what it would otherwise ignore, too.
    with server.client() as explaind_client:
        with pytest.raises(grpc.RpcError) as error:
            explaind_client.explain("pets", {"instances": [instance], "deployed_model_id": "111"})
        assert error.value.code() == grpc.StatusCode.NOT_FOUND and "deployed_model_id" in error.value.details()
        with pytest.raises(grpc.RpcError) as error:
            explaind_client.explain("pets", {"instances": [instance], "parameters": {"threshold": 0.5}})
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "parameters" in error.value.details()
        assert explaind_client.explain("pets", {"instances": [instance], "deployed_model_id": "pets",
                                                "parameters": {}}).deployed_model_id == "pets"
    # A field explaind's copy does not declare (field 99) is named, not dropped.
    known = ours_v1.ExplainRequest(endpoint=f"{PARENT}/endpoints/pets",
                                   instances=[json_format.ParseDict(instance, struct_pb2.Value())])
    explain = grpc.insecure_channel(server.target).unary_unary(
        "/google.cloud.aiplatform.v1.PredictionService/Explain")
    with pytest.raises(grpc.RpcError) as error:
        explain(known.SerializeToString() + bytes([0x98, 0x06, 0x01]), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "#99" in error.value.details()


def test_rest_hostile_bodies_get_clean_errors(server, models):
    explain = f"/v1/{PARENT}/endpoints/pets:explain"
    cases = [
        (b"{not json", 400), (b"\xff\xfe\x00", 400), (b"[1, 2]", 400), (b'{"instances": NaN}', 400),
        (b'{"instances": [1], "explanationSpecOverride": {"examplesOverride": {"neighborCount": "x"}}}', 400),
        (b'{"instances": [1], "unknownField": 1}', 400), (b"[" * 100_000 + b"]" * 100_000, 400),
        (json.dumps({"instances": [1e400]}).encode(), 400), (b'{"instances": [[1]], "parameters": {"a": 1}}', 400),
    ]
    for raw, status in cases:
        got, answer = _http(server, "POST", explain, raw=raw)
        assert got == status, (raw[:60], answer)
        assert answer["error"]["code"] == status and answer["error"]["status"] == "INVALID_ARGUMENT"
    got, answer = _http(server, "POST", explain, raw=b" " * (65 * 1024 * 1024))     # over --max-message-bytes
    assert got == 413 and answer["error"]["status"] == "INVALID_ARGUMENT"
    assert _http(server, "GET", "/v1/nothing/here")[0] == 404
    assert _http(server, "GET", explain)[0] == 405
    got, answer = _http(server, "POST", f"/v1/{PARENT}/models:upload",
                        {"model": {"displayName": "x", "artifactUri": "/nowhere"}, "parentModel": "models/1"})
    assert got == 400 and answer["error"]["details"][0]["fieldViolations"][0]["field"] == "parentModel"
    # Still serving after all of that.
    assert _http(server, "POST", f"/v1/{PARENT}/endpoints/pets:predict", {"instances": [{"features": [0.0] * 8}]})[0] \
        == 200


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "explaind.server.main", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_takes_the_documented_payloads(server, data, models, tmp_path):
    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps(vertex_payloads.upload_body(data["path"], (data["jsonl"],))))
    up = _cli("upload", str(model_json), "--model-id", "pets-cli", "--wait", "--target", server.target)
    assert up.returncode == 0, up.stderr
    request_json = tmp_path / "request.json"
    request_json.write_text(json.dumps(vertex_payloads.explain_body(data["queries"][0].tolist())))
    out = _cli("explain", "pets-cli", str(request_json), "--target", server.target)
    assert out.returncode == 0, out.stderr
    got = [n["neighborId"] for n in json.loads(out.stdout)["explanations"][0]["neighbors"]]
    assert got == _oracle(data, data["query_latent"][0], 5, 2, vertex_payloads.ALLOWED)      # the override, honoured
    # Flags replace the file's values.
    out = _cli("explain", "pets-cli", str(request_json), "--neighbor-count", "3", "--restrict",
               '{"namespace": "label", "allow": ["Bengal"]}', "--target", server.target)
    assert out.returncode == 0, out.stderr
    got = [n["neighborId"] for n in json.loads(out.stdout)["explanations"][0]["neighbors"]]
    assert got == _oracle(data, data["query_latent"][0], 3, 2, ["Bengal"])
    # A field explaind does not understand: named, nothing uploaded.
    bad = vertex_payloads.upload_body(data["path"], (data["jsonl"],))
    bad["model"]["explanationSpec"]["parameters"]["examples"]["neighbourCount"] = 5
    model_json.write_text(json.dumps(bad))
    out = _cli("upload", str(model_json), "--model-id", "pets-bad", "--target", server.target)
    assert out.returncode == 1 and "INVALID_ARGUMENT" in out.stderr and "examples.neighbourCount" in out.stderr
    assert "models/pets-bad" not in _cli("models", "list", "--target", server.target).stdout


def test_sdk_takes_the_documented_payloads(server, data, models):
    body = vertex_payloads.explain_body(data["queries"][2].tolist())
    with server.client() as client:
        model = client.get_model("pets-small")      # uploaded from upload_body by the SDK
        assert model.explanation_spec.parameters.examples.presets.modality == 3    # "tabular"
        response = client.explain("pets", body)
        overridden = client.explain("pets", body, neighbor_count=2, crowding_count=1)
    got = [n.neighbor_id for n in response.explanations[0].neighbors]
    assert got == _oracle(data, data["query_latent"][2], 5, 2, vertex_payloads.ALLOWED)
    assert [n.neighbor_id for n in overridden.explanations[0].neighbors] == \
        _oracle(data, data["query_latent"][2], 2, 1, vertex_payloads.ALLOWED)


def test_the_migration_guide_client_code_runs(server, data, models):
    """docs/migrating-from-vertex.md's Python block, run as written against this daemon."""
    import pathlib
    import re
    guide = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "migrating-from-vertex.md").read_text()
    code = re.search(r"```python\n(.*?)```", guide, re.S).group(1)
    instance = json.dumps({"features": data["queries"][0].tolist()})
    code = code.replace("explaind.explaind.svc:8500", server.target).replace("endpoints/flowers-rest", "endpoints/pets")
    code = code.replace("request.instances.extend([...])",
                        f"request.instances.extend([json_format.ParseDict({instance}, struct_pb2.Value())])")
    printed = []
    exec(compile(code, "migrating-from-vertex.md", "exec"),
         {"json_format": json_format, "struct_pb2": struct_pb2, "print": lambda *a: printed.append(a)})
    deployed, ids = printed[0]
    assert deployed == "pets" and ids == _oracle(data, data["query_latent"][0], 5, 2, [])
