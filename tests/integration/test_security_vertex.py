"""The Vertex AI surfaces sit behind the same security as explaind.v1: the REST
port speaks TLS with the daemon's certificate and each route needs the role of
its gRPC twin; Vertex's gRPC PredictionService needs the predict role."""
from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from google.protobuf import json_format, struct_pb2

from explaind.vertex.v1 import prediction_service_pb2 as vertex
from tests.certs import CA
from tests.integration.helpers import model_payload, search_config
from tests.server_process import pick_free_port

pytestmark = pytest.mark.timeout(300)
PARENT = "/v1/projects/p/locations/l"


@pytest.fixture
def secured(start_server, tmp_path):
    ca = CA()
    cert, key = ca.server_files(tmp_path, "localhost")
    ca_file = ca.write(tmp_path / "ca.crt")
    tokens = tmp_path / "tokens"
    tokens.write_text("admin a-token\npredict p-token\n")
    vectors = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    np.save(tmp_path / "e.npy", vectors)
    server = start_server(tls_cert_file=cert, tls_key_file=key, auth_tokens_file=str(tokens),
                          http_port=pick_free_port())
    return server, ca_file, str(tmp_path / "e.npy")


def rest(server, ca_file, method, path, body=None, token=None, tls=True):
    context = ssl.create_default_context(cafile=ca_file)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    scheme = "https" if tls else "http"
    request = urllib.request.Request(f"{scheme}://localhost:{server.http_port}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context if tls else None) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rest_routes_need_their_grpc_twins_roles_over_tls(secured):
    server, ca_file, data = secured
    body = {"model": model_payload("", [data], search_config(4, "DOT_PRODUCT_DISTANCE"))}
    status, answer = rest(server, ca_file, "POST", f"{PARENT}/models:upload", body)
    assert status == 401 and answer["error"]["status"] == "UNAUTHENTICATED"
    status, answer = rest(server, ca_file, "POST", f"{PARENT}/models:upload", body, token="p-token")
    assert status == 403 and answer["error"]["status"] == "PERMISSION_DENIED"
    status, answer = rest(server, ca_file, "POST", f"{PARENT}/models:upload", body, token="wrong")
    assert status == 401
    status, operation = rest(server, ca_file, "POST", f"{PARENT}/models:upload", body, token="a-token")
    assert status == 200, operation
    path = "/v1/" + operation["name"]
    for _ in range(300):
        status, operation = rest(server, ca_file, "GET", path, token="p-token")    # predict may read
        assert status == 200
        if operation.get("done"):
            break
    assert "error" not in operation
    model_id = operation["name"].split("/models/")[1].split("/")[0] if "/models/" in operation["name"] else None
    endpoint = model_id or operation["response"]["model"].rsplit("/", 1)[-1]
    explain = {"instances": [[0.1, 0.2, 0.3, 0.4]], "explanation_spec_override": {
        "examples_override": {"neighbor_count": 3, "data_format": "EMBEDDINGS"}}}
    status, _ = rest(server, ca_file, "POST", f"{PARENT}/endpoints/{endpoint}:explain", explain)
    assert status == 401
    status, answer = rest(server, ca_file, "POST", f"{PARENT}/endpoints/{endpoint}:explain", explain,
                          token="p-token")
    assert status == 200 and len(answer["explanations"][0]["neighbors"]) == 3
    with pytest.raises((OSError, http.client.HTTPException)):     # plain HTTP on the TLS port: no answer
        rest(server, ca_file, "POST", f"{PARENT}/endpoints/{endpoint}:explain", explain, token="p-token",
             tls=False)
    other = CA().write(str(ca_file) + ".other")
    with pytest.raises(urllib.error.URLError) as refused:     # a client that does not trust the server's CA
        rest(server, other, "GET", path, token="p-token")
    assert isinstance(refused.value.reason, ssl.SSLError)


def test_vertex_grpc_explain_needs_the_predict_role(secured):
    server, ca_file, _ = secured
    with open(ca_file, "rb") as f:
        channel = grpc.secure_channel(server.target.replace("127.0.0.1", "localhost"),
                                      grpc.ssl_channel_credentials(f.read()))
    explain = channel.unary_unary("/google.cloud.aiplatform.v1.PredictionService/Explain",
                                  request_serializer=vertex.ExplainRequest.SerializeToString,
                                  response_deserializer=vertex.ExplainResponse.FromString)
    request = vertex.ExplainRequest(endpoint="projects/p/locations/l/endpoints/absent",
                                    instances=[json_format.ParseDict([0.0] * 4, struct_pb2.Value())])
    with pytest.raises(grpc.RpcError) as err:
        explain(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:      # through the door, then the model is not there
        explain(request, metadata=(("authorization", "Bearer p-token"),), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()
