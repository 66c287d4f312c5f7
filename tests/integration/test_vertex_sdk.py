"""google-cloud-aiplatform's high-level SDK, unchanged, against real daemons:
aiplatform.init names the daemon and credentials, nothing else changes.

- REST (api_transport="rest") over http with AnonymousCredentials, and over
  https with the daemon's TLS and an explaind token;
- gRPC over TLS (the SDK opens a secure channel; GRPC_DEFAULT_SSL_ROOTS_FILE_PATH
  names the test CA) with an explaind token.

Each flow: Model.upload of a real SavedModel (example-based, metadata as
Vertex's notebooks write it, latentSpaceSource empty; and integrated
gradients), Endpoint.create, model.deploy, endpoint.explain (equal to
explaind.v1's answer), endpoint.predict, Model.list, Endpoint.list, a traffic
split across two deployments, undeploy_all, endpoint.delete, model.delete. A
second daemon on the same store serves the endpoint the first deployed.
Artifacts are gs:// URIs (the SDK stages any other to a bucket), read by the
daemons from a local folder (tests/local_gcs).
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from google.api_core import exceptions as google_exceptions
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials as TokenCredentials

from tests import attr_models, oracles
from tests import models as tfmodels
from tests.certs import default_roots_ca
from tests.integration.helpers import write_jsonl
from tests.server_process import ServerProcess, pick_free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
FEATURES, LATENT, N = 4, 6, 60
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-11:latest"
LOCAL_GCS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "local_gcs")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """gs://bucket/{model, linear, data.jsonl} in a local folder, and the examples."""
    root = tmp_path_factory.mktemp("gcs")
    (root / "bucket").mkdir()
    tfmodels.tabular_embedding_model(str(root / "bucket" / "model"), n_features=FEATURES, latent_dim=LATENT)
    import shutil
    shutil.copytree(attr_models.linear_model(), root / "bucket" / "linear")
    x = tfmodels.random_inputs(N, (FEATURES,), seed=3)
    write_jsonl(root / "bucket" / "data.jsonl", [{"id": f"e{i}", "features": x[i].tolist()} for i in range(N)])
    queries = tfmodels.random_inputs(3, (FEATURES,), seed=4)
    write_jsonl(root / "bucket" / "added.jsonl", [{"id": "added", "features": queries[1].tolist()}])
    return {"root": str(root), "x": x, "queries": queries}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca, ca_file = default_roots_ca()          # gRPC reads its default roots once per process
    cert, key = ca.server_files(folder, "localhost")
    tokens = folder / "tokens"
    tokens.write_text("admin a-token\npredict p-token\n")
    return {"cert": cert, "key": key, "ca": ca_file, "tokens": str(tokens)}


def _daemon(tmp_path_factory, bucket, store=None, **settings) -> ServerProcess:
    base = tmp_path_factory.mktemp("daemon")
    env = {"EXPLAIND_TEST_GCS_ROOT": bucket["root"], "PYTHONPATH": LOCAL_GCS}
    return ServerProcess(store or str(base / "store"), str(base / "server.log"), env=env,
                         cache_dir=str(base / "cache"), http_port=pick_free_port(), store_poll_seconds=0.5,
                         **settings).start()


@pytest.fixture(scope="module")
def plain(tmp_path_factory, bucket):
    server = _daemon(tmp_path_factory, bucket)
    yield server
    assert server.stop() == 0, server.log_tail()


@pytest.fixture(scope="module")
def secured(tmp_path_factory, bucket, tls):
    server = _daemon(tmp_path_factory, bucket, tls_cert_file=tls["cert"], tls_key_file=tls["key"],
                     auth_tokens_file=tls["tokens"])
    yield server
    assert server.stop() == 0, server.log_tail()


def _init(api_endpoint: str, credentials, transport: str | None) -> None:
    from google.cloud import aiplatform
    aiplatform.init(project="my-project", location="us-central1", api_endpoint=api_endpoint,
                    credentials=credentials, api_transport=transport)


def _upload_examples(display_name="tabular"):
    from google.cloud import aiplatform
    from google.cloud.aiplatform import explain
    # As Vertex's example-based notebooks write it: the embedding named in `outputs`, no latentSpaceSource.
    parameters = explain.ExplanationParameters({"examples": {
        "example_gcs_source": {"data_format": "JSONL", "gcs_source": {"uris": ["gs://bucket/data.jsonl"]}},
        "neighbor_count": 4, "presets": {"modality": "TABULAR", "query": "PRECISE"}}})
    metadata = explain.ExplanationMetadata(inputs={"features": {"input_tensor_name": "features"}},
                                           outputs={"embedding": {"output_tensor_name": "embedding"}})
    return aiplatform.Model.upload(display_name=display_name, artifact_uri="gs://bucket/model",
                                   serving_container_image_uri=IMAGE, explanation_parameters=parameters,
                                   explanation_metadata=metadata, labels={"kind": "examples"})


def _upload_attributions():
    from google.cloud import aiplatform
    from google.cloud.aiplatform import explain
    parameters = explain.ExplanationParameters({"integrated_gradients_attribution": {"step_count": 20},
                                                "top_k": -1})
    metadata = explain.ExplanationMetadata(inputs={"x": {"input_tensor_name": "x"}},
                                           outputs={"y": {"output_tensor_name": "y"}})
    return aiplatform.Model.upload(display_name="linear", artifact_uri="gs://bucket/linear",
                                   serving_container_image_uri=IMAGE, explanation_parameters=parameters,
                                   explanation_metadata=metadata)


def _neighbors(explanations):
    return [[(n.neighbor_id, round(n.neighbor_distance, 5)) for n in e.neighbors] for e in explanations]


def _attributions(explanations):
    """(output index, attributions rounded) per attribution; SDK (proto-plus) or explaind.v1 messages."""
    from google.protobuf import json_format
    out = []
    for explanation in explanations:
        raw = type(explanation).pb(explanation) if hasattr(type(explanation), "pb") else explanation
        out.append([(list(a.output_index), _rounded(json_format.MessageToDict(a.feature_attributions)))
                    for a in raw.attributions])
    return out


def _rounded(value):
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return round(value, 5) if isinstance(value, float) else value


def _flow(server, bucket, client_of_v1, expect_denied=None):
    """The whole high-level flow; `client_of_v1()`: an explaind.v1 Client, the oracle."""
    from google.cloud import aiplatform
    queries = [{"features": q.tolist()} for q in bucket["queries"]]
    model = _upload_examples()
    assert model.version_id == "1" and model.uri == "gs://bucket/model"
    assert model.labels == {"kind": "examples"}
    model_id = model.resource_name.rpartition("/")[2]
    linear = _upload_attributions()

    endpoint = aiplatform.Endpoint.create(display_name="pets")
    model.deploy(endpoint, machine_type="n1-standard-4", min_replica_count=1, max_replica_count=2)
    deployed = endpoint.list_models()
    assert len(deployed) == 1 and deployed[0].model.endswith(f"/models/{model_id}")
    assert deployed[0].dedicated_resources.machine_spec.machine_type == "n1-standard-4"     # recorded
    first = deployed[0].id
    assert endpoint.traffic_split == {first: 100}

    answer = endpoint.explain(instances=queries)
    assert answer.deployed_model_id == first
    with client_of_v1() as client:
        expected = client.explain(model_id, queries)
    assert _neighbors(answer.explanations) == _neighbors(expected.explanations)
    assert all(len(e.neighbors) == 4 for e in answer.explanations)
    # The metadata's `outputs` entry named the latent space: the "embedding" layer, not the signature's
    # only output (the logits), as the numpy oracle over each layer tells apart.
    path = os.path.join(bucket["root"], "bucket", "model")
    for layer, expected_match in (("embedding", True), ("logits", False)):
        positions, _ = oracles.nearest(tfmodels.keras_layer_latent(path, layer, bucket["x"]),
                                       tfmodels.keras_layer_latent(path, layer, bucket["queries"]), 4,
                                       "SQUARED_L2_DISTANCE")
        oracle_ids = [[f"e{j}" for j in row] for row in positions]
        assert ([[n.neighbor_id for n in e.neighbors] for e in answer.explanations] == oracle_ids) is expected_match

    prediction = endpoint.predict(instances=queries[:1])
    assert prediction.deployed_model_id == first and prediction.model_resource_name == model.resource_name
    np.testing.assert_allclose(prediction.predictions[0],
                               tfmodels.BUILT[os.path.join(bucket["root"], "bucket", "model")](
                                   bucket["queries"][:1]).numpy()[0], rtol=1e-4, atol=1e-5)

    # A second deployment of the model takes 30% of the calls, with its own neighborCount (the
    # deployment's explanation spec beneath each call); the counts follow the split.
    from google.cloud.aiplatform import explain
    metadata = explain.ExplanationMetadata(inputs={"features": {"input_tensor_name": "features"}},
                                           outputs={"embedding": {"output_tensor_name": "embedding"}})
    model.deploy(endpoint, traffic_percentage=30, metadata=(),
                 explanation_parameters=explain.ExplanationParameters({"examples": {"neighbor_count": 2}}),
                 explanation_metadata=metadata)
    split = endpoint.traffic_split
    second = next(k for k in split if k != first)
    assert split == {first: 70, second: 30}
    calls, counts = 200, {}
    for _ in range(calls):
        served = endpoint.explain(instances=queries[:1])
        counts[served.deployed_model_id] = counts.get(served.deployed_model_id, 0) + 1
        assert len(served.explanations[0].neighbors) == (2 if served.deployed_model_id == second else 4)
    low, high = _binomial_bounds(calls, 0.3)
    assert set(counts) <= {first, second} and low <= counts.get(second, 0) <= high, counts

    # An IG model beside them, without traffic: reached by naming it; its deployment's step count applies.
    linear.deploy(endpoint, traffic_percentage=0,
                  explanation_parameters=explain.ExplanationParameters({
                      "integrated_gradients_attribution": {"step_count": 5}}),
                  explanation_metadata=explain.ExplanationMetadata(
                      inputs={"x": {"input_tensor_name": "x"}}, outputs={"y": {"output_tensor_name": "y"}}))
    ig_id = next(d.id for d in endpoint.list_models() if d.model == linear.resource_name)
    assert endpoint.traffic_split == {first: 70, second: 30}
    ig = endpoint.explain(instances=[{"x": [1.0, 2.0, 3.0, 4.0]}], deployed_model_id=ig_id)
    assert ig.deployed_model_id == ig_id
    with client_of_v1() as client:
        oracle = client.explain(linear.resource_name.rpartition("/")[2], {
            "instances": [{"x": [1.0, 2.0, 3.0, 4.0]}],
            "explanation_spec_override": {"parameters": {"integratedGradientsAttribution": {"stepCount": 5}}}})
        default = client.explain(linear.resource_name.rpartition("/")[2], [{"x": [1.0, 2.0, 3.0, 4.0]}])
    assert _attributions(ig.explanations) == _attributions(oracle.explanations)
    assert ig.explanations[0].attributions[0].approximation_error != \
        default.explanations[0].attributions[0].approximation_error     # 5 steps, not the model's 20

    names = {m.resource_name for m in aiplatform.Model.list()}
    assert {model.resource_name, linear.resource_name} <= names
    assert [m.resource_name for m in aiplatform.Model.list(filter='labels.kind="examples"')] == [model.resource_name]
    assert endpoint.resource_name in {e.resource_name for e in aiplatform.Endpoint.list()}

    _refused("FAILED_PRECONDITION", model.delete)                                   # deployed
    _refused("FAILED_PRECONDITION", aiplatform.Endpoint(endpoint.resource_name).delete)   # has deployments
    _refused("INVALID_ARGUMENT", lambda: endpoint.update(traffic_split={first: 60, second: 30}), "trafficSplit")
    if expect_denied is not None:
        expect_denied()
    endpoint.undeploy_all()
    assert endpoint.list_models() == [] and endpoint.traffic_split == {}
    endpoint.delete()
    with pytest.raises(google_exceptions.NotFound):
        aiplatform.Endpoint(endpoint.resource_name).list_models()
    model.delete()
    linear.delete()
    with pytest.raises(google_exceptions.NotFound):
        aiplatform.Model(model.resource_name)


def _refused(status: str, call, words: str = "") -> None:
    """`call` fails with the gRPC status (REST answers Google's error object, whose HTTP code is coarser)."""
    with pytest.raises(google_exceptions.GoogleAPICallError) as error:
        call()
    response = getattr(error.value, "response", None)
    got = response.json()["error"]["status"] if response is not None and hasattr(response, "json") \
        else error.value.grpc_status_code.name
    assert got == status, error.value
    assert words in str(error.value)


def _binomial_bounds(n: int, p: float, sigmas: float = 4.5) -> tuple[float, float]:
    """n * p within 4.5 standard deviations: a correct split fails about once in 150,000 runs."""
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def test_rest_over_http_with_anonymous_credentials(plain, bucket):
    _init(f"http://127.0.0.1:{plain.http_port}", AnonymousCredentials(), "rest")
    _flow(plain, bucket, plain.client)


def test_rest_over_https_with_an_explaind_token(secured, bucket, tls, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls["ca"])       # the REST transport's trust store
    _init(f"https://localhost:{secured.http_port}", TokenCredentials(token="a-token"), "rest")
    _flow(secured, bucket, lambda: secured_client(secured, tls), expect_denied=lambda: _denied(secured, tls, "rest"))


def test_grpc_over_tls_with_an_explaind_token(secured, bucket, tls, monkeypatch):
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", tls["ca"])
    _init(f"localhost:{secured.port}", TokenCredentials(token="a-token"), "grpc")
    _flow(secured, bucket, lambda: secured_client(secured, tls), expect_denied=lambda: _denied(secured, tls, "grpc"))


def secured_client(server, tls):
    from explaind.client import Client
    return Client(f"localhost:{server.port}", tls_ca_file=tls["ca"], token="p-token")


def _denied(server, tls, transport):
    """A predict token reads, and may not write."""
    from google.cloud import aiplatform
    endpoint = f"https://localhost:{server.http_port}" if transport == "rest" else f"localhost:{server.port}"
    _init(endpoint, TokenCredentials(token="p-token"), transport)
    try:
        assert aiplatform.Model.list()
        _refused("PERMISSION_DENIED", lambda: aiplatform.Endpoint.create(display_name="not-allowed"), "admin")
    finally:
        _init(endpoint, TokenCredentials(token="a-token"), transport)


def test_a_second_daemon_on_the_store_serves_the_endpoint(tmp_path_factory, plain, bucket):
    from google.cloud import aiplatform
    _init(f"http://127.0.0.1:{plain.http_port}", AnonymousCredentials(), "rest")
    model = _upload_examples("second")
    endpoint = aiplatform.Endpoint.create(display_name="shared", endpoint_id="shared-endpoint")
    model.deploy(endpoint)
    other = _daemon(tmp_path_factory, bucket, store=plain.store)
    try:
        _init(f"http://127.0.0.1:{other.http_port}", AnonymousCredentials(), "rest")
        there = aiplatform.Endpoint(endpoint.resource_name)
        answer = there.explain(instances=[{"features": bucket["queries"][0].tolist()}])
        assert answer.deployed_model_id == endpoint.list_models()[0].id
        with plain.client() as client:
            expected = client.explain(model.resource_name.rpartition("/")[2],
                                      [{"features": bucket["queries"][0].tolist()}])
        assert _neighbors(answer.explanations) == _neighbors(expected.explanations)
        there.undeploy_all()              # through the second: the first routes by it after its poll
        _init(f"http://127.0.0.1:{plain.http_port}", AnonymousCredentials(), "rest")
        import time
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                aiplatform.Endpoint(endpoint.resource_name).explain(instances=[{"features": [0.0] * FEATURES}])
            except google_exceptions.BadRequest as e:        # REST: FAILED_PRECONDITION is a 400
                assert e.response.json()["error"]["status"] == "FAILED_PRECONDITION", e
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the first daemon still routes to the undeployed model")
    finally:
        assert other.stop() == 0, other.log_tail()


def test_the_migration_guide_s_sdk_snippet_runs(plain, bucket, capsys):
    """docs/migrating-from-vertex.md's high-level SDK snippet, run as written: only the
    daemon's address and the bucket differ."""
    import re

    from google.cloud.aiplatform import explain
    guide = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "migrating-from-vertex.md")).read()
    section = guide[guide.index("### 6. The high-level SDK"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    snippet = snippet.replace("http://localhost:8080", f"http://127.0.0.1:{plain.http_port}")
    snippet = snippet.replace("gs://my-bucket/flowers", "gs://bucket/model")
    namespace = {
        "parameters": explain.ExplanationParameters({"examples": {
            "example_gcs_source": {"data_format": "JSONL", "gcs_source": {"uris": ["gs://bucket/data.jsonl"]}},
            "neighbor_count": 3, "presets": {"modality": "TABULAR"}}}),
        "metadata": explain.ExplanationMetadata(inputs={"features": {"input_tensor_name": "features"}},
                                                outputs={"embedding": {"output_tensor_name": "embedding"}})}
    exec(compile(snippet, "migrating-from-vertex.md", "exec"), namespace)
    printed = capsys.readouterr().out.split()
    assert printed[0] == namespace["response"].deployed_model_id and len(printed[0]) > 0
    assert len(namespace["response"].explanations[0].neighbors) == 3
    from google.cloud import aiplatform
    with pytest.raises(google_exceptions.GoogleAPICallError):
        aiplatform.Model(namespace["model"].resource_name)       # the snippet deleted it


def test_gapic_v1beta1_clients_as_the_notebooks_call_them(plain, bucket):
    """The gapic notebooks' calls (vertex-ai-samples, explainable_ai): v1beta1's generated
    ModelService, EndpointService and PredictionService clients, their operations unpacked
    as v1beta1's types."""
    import grpc
    from google.cloud import aiplatform_v1beta1 as beta
    from google.protobuf import json_format, struct_pb2

    channel = grpc.insecure_channel(plain.target)
    services = beta.services
    models = beta.ModelServiceClient(
        transport=services.model_service.transports.grpc.ModelServiceGrpcTransport(channel=channel))
    endpoints = beta.EndpointServiceClient(
        transport=services.endpoint_service.transports.grpc.EndpointServiceGrpcTransport(channel=channel))
    predictions = beta.PredictionServiceClient(
        transport=services.prediction_service.transports.grpc.PredictionServiceGrpcTransport(channel=channel))
    parent = "projects/my-project/locations/us-central1"
    spec = {"parameters": {"examples": {"example_gcs_source": {"data_format": "JSONL", "gcs_source": {
        "uris": ["gs://bucket/data.jsonl"]}}, "neighbor_count": 5, "presets": {"modality": "TABULAR"}}},
        "metadata": {"inputs": {"features": {"input_tensor_name": "features"}},
                     "outputs": {"embedding": {"output_tensor_name": "embedding"}}}}
    model = beta.Model(display_name="notebook", artifact_uri="gs://bucket/model",
                       explanation_spec=beta.ExplanationSpec(spec), container_spec={"image_uri": IMAGE})
    operation = models.upload_model(parent=parent, model=model)
    assert operation.operation.name.startswith(f"{parent}/models/")
    uploaded = operation.result(timeout=300)
    assert uploaded.model.startswith(f"{parent}/models/") and uploaded.model_version_id == "1"
    endpoint = endpoints.create_endpoint(parent=parent, endpoint={"display_name": "notebook"}).result()
    deployed = endpoints.deploy_model(endpoint=endpoint.name, traffic_split={"0": 100}, deployed_model={
        "model": uploaded.model, "display_name": "notebook", "dedicated_resources": {
            "min_replica_count": 1, "max_replica_count": 1, "machine_spec": {"machine_type": "n1-standard-4"}}}
    ).result(timeout=300).deployed_model
    assert endpoints.get_endpoint(name=endpoint.name).traffic_split == {deployed.id: 100}
    instance = {"features": bucket["queries"][1].tolist()}
    response = predictions.explain(endpoint=endpoint.name, deployed_model_id=deployed.id,
                                   instances=[json_format.ParseDict(instance, struct_pb2.Value())])
    assert response.deployed_model_id == deployed.id
    with plain.client() as client:
        expected = client.explain(uploaded.model.rpartition("/")[2], [instance])
    assert _neighbors(response.explanations) == _neighbors(expected.explanations)
    assert len(response.explanations[0].neighbors) == 5
    # UpdateExplanationDataset adds the query itself as an example: the nearest neighbor from then on.
    models.update_explanation_dataset(request={"model": uploaded.model, "examples": {"example_gcs_source": {
        "data_format": "JSONL", "gcs_source": {"uris": ["gs://bucket/added.jsonl"]}}}}).result(timeout=300)
    updated = predictions.explain(endpoint=endpoint.name, deployed_model_id=deployed.id,
                                  instances=[json_format.ParseDict(instance, struct_pb2.Value())])
    assert updated.explanations[0].neighbors[0].neighbor_id == "added"
    assert updated.explanations[0].neighbors[0].neighbor_distance == pytest.approx(0.0, abs=1e-6)
    endpoints.undeploy_model(endpoint=endpoint.name, deployed_model_id=deployed.id, traffic_split={}).result()
    endpoints.delete_endpoint(name=endpoint.name).result()
    models.delete_model(name=uploaded.model).result()
    channel.close()


def test_hostile_resource_requests_over_rest_are_clean_errors(plain):
    """Hostile ids, page tokens, filters, sizes and bodies: Google's error objects naming the
    field, never a 500."""
    import json
    import urllib.error
    import urllib.request

    def call(method, path, body=None):
        request = urllib.request.Request(f"http://127.0.0.1:{plain.http_port}{path}", method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    root = "/v1/projects/p/locations/us-central1"
    cases = [
        ("GET", f"{root}/models?pageSize=abc", None, "INVALID_ARGUMENT", "page_size"),
        ("GET", f"{root}/models?pageToken=!!!", None, "INVALID_ARGUMENT", "page_token"),
        ("GET", f"{root}/endpoints?pageToken=b2Zmc2V0Oi0x", None, "INVALID_ARGUMENT", "page_token"),
        ("GET", f"{root}/models?pageSize=-3", None, "INVALID_ARGUMENT", "page_size"),
        ("GET", f"{root}/models?filter=" + "x" * 1999, None, "INVALID_ARGUMENT", "filter"),
        ("GET", f"{root}/models?filter=name%3D%22x%22", None, "INVALID_ARGUMENT", "filter"),
        ("GET", f"{root}/models?orderBy=name", None, "INVALID_ARGUMENT", "order_by"),
        ("GET", f"{root}/models/m@7", None, "INVALID_ARGUMENT", "name"),
        ("GET", f"{root}/models/absent", None, "NOT_FOUND", "name"),
        ("GET", f"{root}/endpoints/absent-endpoint", None, "NOT_FOUND", "name"),
        ("POST", f"{root}/endpoints?endpointId=..", {}, "INVALID_ARGUMENT", "endpoint_id"),
        ("POST", f"{root}/endpoints?endpointId=0123", {}, "INVALID_ARGUMENT", "endpoint_id"),
        ("POST", f"{root}/endpoints", {"displayName": "x" * 200}, "INVALID_ARGUMENT", "endpoint.display_name"),
        ("POST", f"{root}/endpoints", {"labels": {f"k{i}": "v" for i in range(1000)}}, "INVALID_ARGUMENT",
         "endpoint.labels"),
        ("POST", f"{root}/endpoints", {"noSuchField": 1}, "INVALID_ARGUMENT", "endpoint"),
        ("POST", f"{root}/endpoints/absent-endpoint:deployModel",
         {"deployedModel": {"model": "projects/p/locations/l/models/m"}}, "NOT_FOUND", "name"),
        ("DELETE", f"{root}/models/absent", None, "NOT_FOUND", "name"),
        ("GET", "/ui/projects/p/locations/l/operations/absent", None, "NOT_FOUND", "name"),
        ("GET", "/ui/projects/p/locations/l/endpoints/e/operations/" + "a" * 129, None, "NOT_FOUND", None),
    ]
    for method, path, body, status, field in cases:
        code, answer = call(method, path, body)
        assert answer["error"]["status"] == status, (path, answer)
        assert code < 500
        if field is not None:
            assert any(v["field"] == field for d in answer["error"].get("details", [])
                       for v in d.get("fieldViolations", [])), (path, answer)
    code, created = call("POST", f"{root}/endpoints?endpointId=hostile", {"displayName": "h"})
    assert code == 200 and created["done"] is True
    code, answer = call("POST", f"{root}/endpoints/hostile:deployModel", {
        "deployedModel": {"model": f"{root[4:]}/models/absent"}, "trafficSplit": {"0": 60}})
    assert answer["error"]["status"] == "NOT_FOUND"
    code, answer = call("PATCH", f"{root}/endpoints/hostile?updateMask=trafficSplit",
                        {"trafficSplit": {str(i): 1 for i in range(5000)}})
    assert answer["error"]["status"] == "INVALID_ARGUMENT" and "trafficSplit" in answer["error"]["message"]
    assert call("DELETE", f"{root}/endpoints/hostile")[0] == 200
