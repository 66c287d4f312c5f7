"""Uploads on a real daemon under --allowed-uri-prefix and the upload bounds:
what lies outside the prefixes is refused at once (PERMISSION_DENIED naming the
field) and never opened; too many examples, too many bytes (a decompression
bomb included) and too many uploads at once each get their own status."""
from __future__ import annotations

import gzip
import os

import grpc
import numpy as np
import pytest
from google.rpc import code_pb2

from explaind.client import OperationError
from tests.integration.helpers import bad_request_fields, model_payload, search_config, status_fields, \
    write_jsonl

EX = "model.explanation_spec.parameters.examples"
URIS = f"{EX}.gcs_source.uris"
pytestmark = pytest.mark.timeout(300)


def embeddings_payload(uris: list[str], **kw) -> dict:
    return model_payload("", uris, search_config(4, "SQUARED_L2_DISTANCE"), **kw)


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": f"e{i}", "embedding": rng.normal(size=4).round(4).tolist()} for i in range(n)]


def upload_error(client, payload, model_id="m") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        client.upload_model(payload, model_id=model_id)
    return info.value


@pytest.fixture
def folders(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "keys.jsonl").write_text('{"embedding": [9, 9, 9, 9]}\n')
    return data, secret


def test_outside_the_prefixes_is_refused_and_never_opened(start_server, folders):
    data, secret = folders
    good = write_jsonl(data / "train.jsonl", rows(20))
    os.symlink("/etc/passwd", data / "leak.jsonl")
    os.symlink(secret / "keys.jsonl", data / "keys.jsonl")
    server = start_server(allowed_uri_prefix=str(data))
    cases = [
        (embeddings_payload([str(data / "leak.jsonl")]), f"{URIS}[0]"),
        (embeddings_payload([good, str(data / "keys.jsonl")]), f"{URIS}[1]"),
        (embeddings_payload([str(data / "*.jsonl")]), f"{URIS}[0]"),                 # the glob finds the link
        (embeddings_payload([str(data)]), f"{URIS}[0]"),                              # so does the folder
        (embeddings_payload([f"{data}/../secret/keys.jsonl"]), f"{URIS}[0]"),
        (embeddings_payload([f"file://{data}/%2e%2e/secret/keys.jsonl"]), f"{URIS}[0]"),
        (embeddings_payload(["/etc/passwd"]), f"{URIS}[0]"),
        (embeddings_payload(["s3://someone-elses-bucket/data.jsonl"]), f"{URIS}[0]"),
        (dict(embeddings_payload([good]), artifactUri="/etc"), "model.artifact_uri"),
        (dict(embeddings_payload([good]), artifactUri=f"{data}/../secret"), "model.artifact_uri"),
    ]
    delta = embeddings_payload([good])
    delta["explanationSpec"]["parameters"]["examples"]["nearestNeighborSearchConfig"]["contentsDeltaUri"] = \
        "gs://elsewhere/index"
    cases.append((delta, f"{EX}.nearest_neighbor_search_config.contentsDeltaUri"))
    with server.client() as client:
        for payload, field in cases:
            error = upload_error(client, payload)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (field, error.details())
            assert bad_request_fields(error) == [field], error.details()
        assert client.list_operations() == []                  # nothing was started
        model = client.wait(client.upload_model(embeddings_payload([good]), model_id="ok"), timeout=120)
        assert model.index_info.example_count == 20
        response = client.explain("ok", [rows(1, seed=5)[0]["embedding"]], embeddings=True, neighbor_count=3)
        assert len(response.explanations[0].neighbors) == 3


def test_without_prefixes_the_daemon_opens_what_it_is_told(start_server, folders):
    """Why the setting exists: the embedded default reads a link to /etc/passwd."""
    data, _ = folders
    os.symlink("/etc/passwd", data / "leak.jsonl")
    server = start_server()
    with server.client() as client:
        op = client.upload_model(embeddings_payload([str(data / "leak.jsonl")]), model_id="leak")
        with pytest.raises(OperationError) as info:
            client.wait(op, timeout=120)
    assert info.value.status.code == code_pb2.INVALID_ARGUMENT and "line 1" in info.value.status.message


def test_upload_bounds(start_server, folders):
    data, _ = folders
    six = write_jsonl(data / "six.jsonl", rows(6))
    line = '{"embedding": [0.1, 0.2, 0.3, 0.4]}\n'
    bomb = data / "bomb.jsonl.gz"
    with gzip.open(bomb, "wt") as f:         # ~4 MB of JSON in a few kilobytes
        f.write(line * 110_000)
    assert bomb.stat().st_size < 64 * 1024
    server = start_server(allowed_uri_prefix=str(data), max_examples_per_model=5,
                          max_upload_data_gb=f"{2 / 1024:.9f}")          # 2 MiB per pass over the data
    with server.client() as client:
        for uris, model_id, wanted in (([six], "six", "more than 5 examples"),
                                       ([str(bomb)], "bomb", "larger than")):
            op = client.upload_model(embeddings_payload(uris), model_id=model_id)
            with pytest.raises(OperationError) as info:
                client.wait(op, timeout=120)
            status = info.value.status
            assert status.code == code_pb2.RESOURCE_EXHAUSTED and wanted in status.message, status.message
            assert status_fields(status) == [URIS], status
        assert [m.name for m in client.list_models()] == []
        ok = client.wait(client.upload_model(embeddings_payload([write_jsonl(data / "five.jsonl", rows(5))]),
                                             model_id="five"), timeout=120)
        assert ok.index_info.example_count == 5


def test_concurrent_uploads_are_bounded(start_server, folders):
    """A build that loads a SavedModel holds its slot for seconds (TensorFlow is imported
    in the build); the next upload is RESOURCE_EXHAUSTED until it ends."""
    from tests import models as tfmodels
    data, _ = folders
    artifact = tfmodels.tabular_embedding_model(str(data / "model"), n_features=4, latent_dim=4)
    inputs = write_jsonl(data / "inputs.jsonl",
                         [{"features": r.tolist()} for r in tfmodels.random_inputs(16, (4,), seed=2)])
    other = write_jsonl(data / "other.jsonl", rows(8))
    server = start_server(allowed_uri_prefix=str(data), max_concurrent_uploads=1)
    with server.client() as client:
        first = client.upload_model(model_payload(artifact, [inputs], search_config(4, "SQUARED_L2_DISTANCE"),
                                                  latent="embedding"), model_id="slow")
        error = upload_error(client, embeddings_payload([other]), model_id="second")
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-concurrent-uploads" in error.details()
        assert client.wait(first, timeout=240).index_info.example_count == 16
        assert client.wait(client.upload_model(embeddings_payload([other]), model_id="second"),
                           timeout=120).index_info.example_count == 8


def test_special_files_are_refused(start_server, folders):
    data, _ = folders
    os.mkfifo(data / "pipe.jsonl")
    server = start_server(allowed_uri_prefix=str(data))
    with server.client() as client:
        error = upload_error(client, embeddings_payload([str(data / "pipe.jsonl")]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a regular file" in error.details()
    assert bad_request_fields(error) == [f"{URIS}[0]"]


def test_hostile_upload_messages_get_invalid_argument(start_server, folders):
    """Found by the fuzz: values a message can hold but JSON or an enum cannot."""
    from google.protobuf import json_format

    from explaind.v1 import model_pb2, model_service_pb2, model_service_pb2_grpc

    data, _ = folders
    good = write_jsonl(data / "train.jsonl", rows(8))
    server = start_server(allowed_uri_prefix=str(data))

    def request(**mutations) -> model_service_pb2.UploadModelRequest:
        model = json_format.ParseDict(embeddings_payload([good]), model_pb2.Model())
        for mutate in mutations.values():
            mutate(model)
        return model_service_pb2.UploadModelRequest(model=model, model_id="hostile")

    def presets(m):
        m.explanation_spec.parameters.examples.ClearField("nearest_neighbor_search_config")
        m.explanation_spec.parameters.examples.presets.query = 99          # open enum: parses, names nothing

    def infinite(m):
        m.explanation_spec.parameters.examples.nearest_neighbor_search_config.struct_value.fields[
            "extra"].number_value = float("inf")

    def bad_time(m):
        m.create_time.nanos = 2**31 - 1

    cases = {"presets": (presets, f"{EX}.presets.query"), "infinite": (infinite, "model"),
             "bad_time": (bad_time, "model")}
    with server.channel() as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        for name, (mutate, field) in cases.items():
            with pytest.raises(grpc.RpcError) as info:
                stub.UploadModel(request(m=mutate), timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, info.value.details())
            assert bad_request_fields(info.value) == [field], (name, info.value.details())
        assert stub.UploadModel(request(), timeout=30).name.startswith("operations/")
