"""The SDK's retry policy against real gRPC servers on loopback whose servicers
fail on purpose: what is retried, how often, and the upload read-back."""
from __future__ import annotations

import concurrent.futures
import json
import threading
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import descriptor_pool, empty_pb2

from explaind.client import Client
from explaind.client.retries import SERVICE_CONFIG_JSON, RetryPolicy, same_upload, upload_with_retry
from explaind.v1 import model_pb2, model_service_pb2, model_service_pb2_grpc, prediction_service_pb2, \
    prediction_service_pb2_grpc

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


class Failing:
    """Answers `code` to the first `failures` calls of each method, then succeeds."""

    def __init__(self, failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE):
        self.failures = failures
        self.code = code
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def attempt(self, method: str, context) -> bool:
        with self._lock:
            n = self.calls[method] = self.calls.get(method, 0) + 1
        if n <= self.failures:
            context.abort(self.code, f"attempt {n} refused on purpose")
        return True


class Predictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, failing: Failing):
        self.failing = failing

    def Explain(self, request, context):
        self.failing.attempt("Explain", context)
        return prediction_service_pb2.ExplainResponse()


class Models(model_service_pb2_grpc.ModelServiceServicer):
    """UploadModel claims the id like the daemon does. `lose_first_answer`: the first
    upload is done but answered UNAVAILABLE, as when a connection drops under it.
    `taken_by`: the first upload is refused, and that model takes the id (another
    client's upload landing before the repeat)."""

    def __init__(self, failing: Failing, lose_first_answer: bool = False, taken_by: model_pb2.Model | None = None):
        self.failing = failing
        self.lose_first_answer = lose_first_answer
        self.taken_by = taken_by
        self.stored: dict[str, tuple[model_pb2.Model, operations_pb2.Operation]] = {}

    def UploadModel(self, request, context):
        self.failing.attempt("UploadModel", context)
        if self.taken_by is not None:
            self._store(request.model_id, self.taken_by)
            self.taken_by = None
            context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        if request.model_id in self.stored:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"model {request.model_id!r} is already being built")
        op = self._store(request.model_id, request.model)
        if self.lose_first_answer:
            self.lose_first_answer = False
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped after the claim")
        return op

    def _store(self, model_id: str, sent: model_pb2.Model) -> operations_pb2.Operation:
        model = model_pb2.Model()
        model.CopyFrom(sent)
        model.name, model.state = f"models/{model_id}", model_pb2.Model.BUILDING
        model.create_time.GetCurrentTime()
        meta = model_service_pb2.UploadModelOperationMetadata(model=model.name)
        meta.create_time.GetCurrentTime()
        op = operations_pb2.Operation(name=f"operations/{model_id}-{len(self.stored)}")
        op.metadata.Pack(meta)
        self.stored[model_id] = (model, op)
        return op

    def GetModel(self, request, context):
        model_id = request.name.partition("/")[2]
        if model_id not in self.stored:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
        return self.stored[model_id][0]

    def DeleteModel(self, request, context):
        self.failing.attempt("DeleteModel", context)
        return empty_pb2.Empty()


class Operations(operations_pb2_grpc.OperationsServicer):
    def __init__(self, models: Models):
        self.models = models

    def ListOperations(self, request, context):
        wanted = request.filter.partition("=")[2]
        ops = [op for model_id, (_, op) in self.models.stored.items() if model_id == wanted]
        return operations_pb2.ListOperationsResponse(operations=ops)


@pytest.fixture
def serve():
    servers = []

    def start(failing: Failing, **upload_faults):
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
        models = Models(failing, **upload_faults)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Predictions(failing), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
        operations_pb2_grpc.add_OperationsServicer_to_server(Operations(models), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}", models

    yield start
    for server in servers:
        server.stop(0)


def test_unavailable_is_retried_up_to_the_policy_and_other_codes_never(serve):
    policy = RetryPolicy.from_service_config()
    failing = Failing(failures=policy.max_attempts - 1)
    target, _ = serve(failing)
    with Client(target) as client:
        client.explain("m", [[0.0]])
    assert failing.calls["Explain"] == policy.max_attempts        # 4 refusals, then OK

    failing = Failing(failures=policy.max_attempts)
    target, _ = serve(failing)
    with Client(target) as client, pytest.raises(grpc.RpcError) as err:
        client.explain("m", [[0.0]])
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and failing.calls["Explain"] == policy.max_attempts

    for code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED):
        failing = Failing(failures=1, code=code)
        target, _ = serve(failing)
        with Client(target) as client, pytest.raises(grpc.RpcError) as err:
            client.explain("m", [[0.0]])
        assert err.value.code() == code and failing.calls["Explain"] == 1


def test_deletes_are_not_retried(serve):
    failing = Failing(failures=1)
    target, _ = serve(failing)
    with Client(target) as client, pytest.raises(grpc.RpcError) as err:
        client.delete_model("m")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and failing.calls["DeleteModel"] == 1


def test_upload_without_model_id_is_never_retried(serve):
    failing = Failing(failures=1)
    target, models = serve(failing)
    with Client(target) as client, pytest.raises(grpc.RpcError) as err:
        client.upload_model({"displayName": "x"})
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and failing.calls["UploadModel"] == 1


def test_upload_with_model_id_is_retried_and_a_lost_answer_is_read_back(serve):
    target, models = serve(Failing(failures=0), lose_first_answer=True)
    with Client(target) as client:
        op = client.upload_model({"displayName": "mine", "artifactUri": "/m"}, model_id="tab")
    assert op.name == models.stored["tab"][1].name        # the operation the lost attempt started


def test_upload_retry_does_not_adopt_someone_elses_model(serve):
    target, models = serve(Failing(failures=0), taken_by=model_pb2.Model(display_name="theirs"))
    with Client(target) as client, pytest.raises(grpc.RpcError) as err:
        client.upload_model({"displayName": "mine", "artifactUri": "/m"}, model_id="tab")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert models.stored["tab"][0].display_name == "theirs"


def test_upload_with_retry_gives_up_after_the_policy():
    class Refused(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

    attempts, waits = [], []

    def send():
        attempts.append(1)
        raise Refused()

    policy = RetryPolicy.from_service_config()
    with pytest.raises(Refused):
        upload_with_retry(send, lambda: None, policy, sleep=waits.append)
    assert len(attempts) == policy.max_attempts and len(waits) == policy.max_attempts - 1
    backoff = policy.initial_backoff_s
    for wait in waits:                          # jittered below an exponential ceiling
        assert 0 <= wait <= backoff
        backoff = min(backoff * policy.multiplier, policy.max_backoff_s)


def test_same_upload_ignores_only_the_servers_fields():
    sent = model_pb2.Model(display_name="a", artifact_uri="/m")
    stored = model_pb2.Model(display_name="a", artifact_uri="/m", name="models/x", state=model_pb2.Model.READY)
    stored.create_time.GetCurrentTime()
    stored.index_info.example_count = 3
    assert same_upload(stored, sent)
    assert not same_upload(model_pb2.Model(display_name="a", artifact_uri="/other"), sent)


def test_service_config_names_real_safe_methods_and_the_docs_quote_it():
    config = json.loads(SERVICE_CONFIG_JSON)
    pool = descriptor_pool.Default()
    named = set()
    for method_config in config["methodConfig"]:
        for name in method_config["name"]:
            service = pool.FindServiceByName(name["service"])
            assert service.FindMethodByName(name["method"]) is not None, name
            named.add(name["method"])
    assert {"Explain", "Predict", "GetModel", "ListModels", "GetOperation", "ListOperations",
            "WaitOperation"} <= named
    assert not named & {"UploadModel", "DeleteModel", "DeleteOperation", "UpdateExplanationDataset"}
    assert config["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    docs = (ROOT / "docs" / "reliability.md").read_text()
    assert SERVICE_CONFIG_JSON.strip() in docs, "docs/reliability.md must quote service_config.json as it is"
