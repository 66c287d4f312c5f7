"""UpdateExplanationDataset under the security settings, through real daemons:
only an admin may update and a read-only replica (--disable-model-uploads)
refuses, leaving the served model as it was; data outside --allowed-uri-prefix
is PERMISSION_DENIED naming the field, before any operation starts; and
--max-examples-per-model counts the examples the model keeps."""
from __future__ import annotations

import os

import grpc
import numpy as np
import pytest
from google.rpc import code_pb2

from explaind.client import Client, OperationError
from tests.integration.helpers import bad_request_fields, model_payload, search_config, status_fields, \
    write_jsonl

ADD = "examples.gcs_source.uris"
pytestmark = pytest.mark.timeout(300)


def rows(n: int, seed: int = 0, prefix: str = "e") -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": f"{prefix}{i}", "embedding": rng.normal(size=4).round(4).tolist()} for i in range(n)]


def payload(uri: str) -> dict:
    return model_payload("", [uri], search_config(4, "SQUARED_L2_DISTANCE"))


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_updates_need_an_admin_on_a_replica_that_takes_uploads(start_server, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("admin a-token\npredict p-token\n")
    store = tmp_path / "store"
    base = write_jsonl(tmp_path / "base.jsonl", rows(10))
    added = write_jsonl(tmp_path / "add.jsonl", rows(3, seed=1, prefix="n"))
    server = start_server(store=str(store), auth_tokens_file=str(tokens))
    with Client(server.target, token="a-token") as admin, Client(server.target, token="p-token") as predict:
        admin.wait(admin.upload_model(payload(base), model_id="m"), timeout=120)
        error = refused(lambda: predict.update_explanation_dataset("m", uris=[added], remove_ids=["e0"]))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
        assert predict.get_model("m").index_info.example_count == 10          # a predict caller may read it
        assert len(admin.list_operations()) == 1                              # the upload's only
        model = admin.wait(admin.update_explanation_dataset("m", uris=[added], remove_ids=["e0"]), timeout=120)
        assert model.index_info.example_count == 12
    server.stop()

    # A read-only replica on the same store serves the model and refuses to change it, whoever asks.
    replica = start_server(store=str(store), auth_tokens_file=str(tokens), disable_model_uploads="true")
    with Client(replica.target, token="a-token") as admin:
        error = refused(lambda: admin.update_explanation_dataset("m", remove_ids=["e1"]))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "--disable-model-uploads" in error.details()
        assert admin.get_model("m").index_info.example_count == 12
        response = admin.explain("m", [rows(1, seed=1, prefix="n")[0]["embedding"]], embeddings=True,
                                 neighbor_count=1)
        assert [n.neighbor_id for n in response.explanations[0].neighbors] == ["n0"]
    assert not (store / "models" / "m" / "building.json").exists()


def test_update_data_outside_the_prefixes_is_refused_and_the_model_bounds_count(start_server, tmp_path):
    data, secret = tmp_path / "data", tmp_path / "secret"
    data.mkdir()
    secret.mkdir()
    write_jsonl(secret / "keys.jsonl", rows(2, seed=9, prefix="s"))
    os.symlink(secret / "keys.jsonl", data / "keys.jsonl")
    os.symlink("/etc/passwd", data / "leak.jsonl")
    good = write_jsonl(data / "add.jsonl", rows(3, seed=1, prefix="n"))
    server = start_server(allowed_uri_prefix=str(data), max_examples_per_model=12)
    with server.client() as client:
        client.wait(client.upload_model(payload(write_jsonl(data / "base.jsonl", rows(10))), model_id="m"),
                    timeout=120)
        cases = [
            ({"uris": [str(data / "leak.jsonl")]}, f"{ADD}[0]"),
            ({"uris": [good, str(data / "keys.jsonl")]}, f"{ADD}[1]"),
            ({"uris": [str(data / "*.jsonl")]}, f"{ADD}[0]"),                 # the glob finds the links
            ({"uris": [f"{data}/../secret/keys.jsonl"]}, f"{ADD}[0]"),
            ({"uris": [f"file://{data}/%2e%2e/secret/keys.jsonl"]}, f"{ADD}[0]"),
            ({"uris": ["s3://someone-elses-bucket/data.jsonl"]}, f"{ADD}[0]"),
            ({"uris": [str(secret / "keys.jsonl")], "jsonl": True}, "examples.example_gcs_source.gcs_source.uris[0]"),
        ]
        for kwargs, field in cases:
            error = refused(lambda kwargs=kwargs: client.update_explanation_dataset("m", **kwargs))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (kwargs, error.details())
            assert bad_request_fields(error) == [field], error.details()
        assert len(client.list_operations()) == 1            # no update started

        # 10 kept + 3 added > 12: refused in the operation, naming the field; the model serves on.
        with pytest.raises(OperationError) as info:
            client.wait(client.update_explanation_dataset("m", uris=[good]), timeout=120)
        status = info.value.status
        assert status.code == code_pb2.RESOURCE_EXHAUSTED and "the model keeps 10 examples" in status.message
        assert status_fields(status) == [ADD]
        assert client.get_model("m").index_info.example_count == 10
        # Removing two first leaves room.
        model = client.wait(client.update_explanation_dataset("m", uris=[good], remove_ids=["e0", "e1"]),
                            timeout=120)
        assert model.index_info.example_count == 11
