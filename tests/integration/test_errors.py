"""Bad input gets a clear status naming the field, never a crash or a half-published model."""
from __future__ import annotations

import os

import grpc
import pytest
from google.rpc import code_pb2

from explaind.client import OperationError
from tests import models as tfmodels
from tests.integration.helpers import bad_request_fields, model_payload, search_config, write_jsonl

EX = "model.explanation_spec.parameters.examples"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tests.server_process import ServerProcess
    base = tmp_path_factory.mktemp("errors")
    path = tfmodels.tabular_embedding_model(str(base / "model"), n_features=8, latent_dim=16)
    x = tfmodels.random_inputs(40, (8,), seed=1)
    data = write_jsonl(base / "d.jsonl", [{"features": r.tolist()} for r in x])
    server = ServerProcess(str(base / "store"), str(base / "log"), cache_dir=str(base / "cache")).start()
    with server.client() as client:
        op = client.upload_model(model_payload(path, [data], search_config(16, "SQUARED_L2_DISTANCE"),
                                               latent="embedding"), model_id="good")
        client.wait(op, timeout=180)
    yield {"server": server, "path": path, "data": data, "base": base}
    server.stop()


def _error(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


@pytest.mark.parametrize("mutate,code,field", [
    (lambda p: p["explanationSpec"]["parameters"]["examples"]["nearestNeighborSearchConfig"]["config"]
     .update(distanceMeasureType="MANHATTAN"), "INVALID_ARGUMENT",
     f"{EX}.nearest_neighbor_search_config.config.distanceMeasureType"),
    (lambda p: p["explanationSpec"]["parameters"]["examples"]["nearestNeighborSearchConfig"]["config"]
     .pop("dimensions"), "INVALID_ARGUMENT", f"{EX}.nearest_neighbor_search_config.config.dimensions"),
    (lambda p: p["explanationSpec"]["parameters"]["examples"]["nearestNeighborSearchConfig"]["config"]
     .update(algorithmConfig={"treeAhConfig": {"leafNodeEmbeddingCount": -5}}), "INVALID_ARGUMENT",
     f"{EX}.nearest_neighbor_search_config.config.algorithmConfig.treeAhConfig.leafNodeEmbeddingCount"),
    (lambda p: p["explanationSpec"]["parameters"]["examples"]["gcsSource"].update(uris=["/nonexistent/*.jsonl"]),
     "INVALID_ARGUMENT", f"{EX}.gcs_source.uris[0]"),
    (lambda p: p.update(artifactUri="/nonexistent/model"), "INVALID_ARGUMENT", "model.artifact_uri"),
    (lambda p: p["explanationSpec"]["parameters"]["examples"]["gcsSource"].update(uris=[os.__file__]),
     "INVALID_ARGUMENT", f"{EX}.gcs_source.uris[0]"),       # a file of no known data format
    (lambda p: p["explanationSpec"]["parameters"]["examples"].update(neighborCount=-1), "INVALID_ARGUMENT",
     f"{EX}.neighbor_count"),
])
def test_bad_upload_is_rejected_at_once(setup, mutate, code, field):
    payload = model_payload(setup["path"], [setup["data"]], search_config(16, "SQUARED_L2_DISTANCE"),
                            latent="embedding")
    mutate(payload)
    with setup["server"].client() as client:
        err = _error(lambda: client.upload_model(payload, model_id="bad"))
        assert err.code().name == code, err.details()
        assert field in bad_request_fields(err), (bad_request_fields(err), err.details())
        assert _error(lambda: client.get_model("bad")).code() == grpc.StatusCode.NOT_FOUND


def test_bad_model_ids(setup):
    payload = model_payload(setup["path"], [setup["data"]], search_config(16, "SQUARED_L2_DISTANCE"),
                            latent="embedding")
    with setup["server"].client() as client:
        for bad in ("9lives", "-x", "UPPER", "a" * 64, "has space", "trailing\n", "../up"):
            err = _error(lambda bad=bad: client.upload_model(payload, model_id=bad))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request_fields(err) == ["model_id"]
        err = _error(lambda: client.upload_model(payload, model_id="good"))
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize("latent,dimensions,field", [
    ("no_such_layer", 16, "model.explanation_spec.metadata.latent_space_source"),
    ("embedding", 7, f"{EX}.nearest_neighbor_search_config.config.dimensions"),
])
def test_errors_known_only_when_the_model_loads_fail_the_operation(setup, latent, dimensions, field):
    payload = model_payload(setup["path"], [setup["data"]], search_config(dimensions, "SQUARED_L2_DISTANCE"),
                            latent=latent)
    with setup["server"].client() as client:
        op = client.upload_model(payload, model_id=f"late-{dimensions}")
        with pytest.raises(OperationError) as err:
            client.wait(op, timeout=120)
        status = err.value.status
        assert status.code == code_pb2.INVALID_ARGUMENT
        assert "LOADING_MODEL" in status.message and field.split(".")[-1] in str(status)
        assert _error(lambda: client.get_model(f"late-{dimensions}")).code() == grpc.StatusCode.NOT_FOUND
    assert not os.path.exists(os.path.join(str(setup["base"] / "store"), "models", f"late-{dimensions}", "builds")) \
        or os.listdir(os.path.join(str(setup["base"] / "store"), "models", f"late-{dimensions}", "builds")) == []


def test_malformed_data_set_fails_the_operation_and_publishes_nothing(setup):
    bad = write_jsonl(setup["base"] / "bad.jsonl", [{"features": [0.0] * 8}, {"features": [1.0] * 3}])
    payload = model_payload(setup["path"], [bad], search_config(16, "SQUARED_L2_DISTANCE"), latent="embedding")
    with setup["server"].client() as client:
        op = client.upload_model(payload, model_id="malformed")
        with pytest.raises(OperationError) as err:
            client.wait(op, timeout=120)
        assert err.value.status.code == code_pb2.INVALID_ARGUMENT
        assert _error(lambda: client.get_model("malformed")).code() == grpc.StatusCode.NOT_FOUND


def test_explain_errors(setup):
    with setup["server"].client() as client:
        assert _error(lambda: client.explain("missing", [[0.0] * 16], embeddings=True)).code() == \
            grpc.StatusCode.NOT_FOUND
        err = _error(lambda: client.explain("good", [[0.0] * 5], embeddings=True))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and bad_request_fields(err) == ["instances[0]"]
        assert "5" in err.details() and "16" in err.details()
        err = _error(lambda: client.explain("good", [{"features": [0.0] * 3}]))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(err)[0].startswith("instances[0]")
        err = _error(lambda: client.explain("good", [{"feature": [0.0] * 8}]))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        err = _error(lambda: client.explain("good", [[0.0] * 16], embeddings=True, neighbor_count=-2))
        assert bad_request_fields(err) == ["explanation_spec_override.examples_override.neighbor_count"]
        err = _error(lambda: client.explain("good", [[0.0] * 16], embeddings=True, neighbor_count=100000))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        err = _error(lambda: client.explain("good", [[0.0] * 16], embeddings=True,
                                            restrictions=[{"namespace": "", "allow": ["a"]}]))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(err)[0].startswith("explanation_spec_override.examples_override.restrictions")
        err = _error(lambda: client.explain("good", []))
        assert bad_request_fields(err) == ["instances"]
        err = _error(lambda: client.explain("good", [[0.0] * 16], embeddings=True, override={
            "parameters": {"integratedGradientsAttribution": {"stepCount": 5}}}))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(err) == ["explanation_spec_override.parameters"]
        err = _error(lambda: client.explain("good", [[0.0] * 16], override={
            "metadata": {"inputs": {"features": {"inputBaselines": [[0.0] * 8]}}}}))
        assert bad_request_fields(err) == ["explanation_spec_override.metadata"]
        assert _error(lambda: client.get_operation("operations/nope")).code() == grpc.StatusCode.NOT_FOUND
        assert _error(lambda: client.get_model("models/a/b")).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unreadable_saved_model_fails_the_operation_naming_the_artifact(setup):
    broken = setup["base"] / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a protocol buffer")
    payload = model_payload(str(broken), [setup["data"]], search_config(16, "SQUARED_L2_DISTANCE"),
                            latent="embedding")
    with setup["server"].client() as client:
        op = client.upload_model(payload, model_id="broken")
        with pytest.raises(OperationError) as err:
            client.wait(op, timeout=120)
        status = err.value.status
        assert status.code == code_pb2.INVALID_ARGUMENT, status
        assert "LOADING_MODEL" in status.message and "artifact_uri" in status.message
        assert _error(lambda: client.get_model("broken")).code() == grpc.StatusCode.NOT_FOUND
