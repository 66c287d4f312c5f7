"""The REST port's own duties, on a real aiohttp server on loopback: draining
answers 503, the concurrency bound 429, request ids, metrics, Google-style
errors. The planes behind it are stand-ins here; tests/integration/
test_vertex_compat.py runs the whole daemon."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
from google.longrunning import operations_pb2

from explaind.server.admission import Admission
from explaind.server.errors import NotFound
from explaind.server.metrics import Metrics
from explaind.server.vertex.rest import RestApi
from explaind.v1 import model_service_pb2

PREDICT = "/v1/projects/p/locations/l/endpoints/m:predict"


class _Prediction:
    """Answers after `release` is set, so tests can hold calls in flight."""

    def __init__(self):
        self.release = asyncio.Event()
        self.release.set()
        self.seen = []

    async def predict(self, request, deadline):
        from explaind.vertex.v1 import prediction_service_pb2 as v1
        self.seen.append(request)
        await self.release.wait()
        return v1.PredictResponse(deployed_model_id="m")


class _Control:
    async def get_operation(self, name):
        if name != "operations/known":
            raise NotFound(f"operation {name!r} not found", field="name")
        meta = model_service_pb2.UploadModelOperationMetadata(model="models/m")
        operation = operations_pb2.Operation(name=name, done=False)
        operation.metadata.Pack(meta)
        return operation


@pytest.fixture
def api():
    metrics = Metrics(gpu_memory=False)
    prediction = _Prediction()
    admission = Admission(metrics, max_concurrent_calls=2)
    rest = RestApi(prediction, _Control(), admission, max_body_bytes=1024)
    return rest, prediction, admission, metrics


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def _started(rest):
    port = await rest.start("127.0.0.1", 0, 1.0)
    return f"http://127.0.0.1:{port}"


def test_answers_errors_request_ids_and_metrics(api):
    rest, prediction, _, metrics = api

    async def scenario():
        base = await _started(rest)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(base + PREDICT, json={"instances": [[1.0]], "labels": {"team": "a"}},
                                     headers={"x-request-id": "abc"}) as r:
                    assert r.status == 200 and r.headers["x-request-id"] == "abc"
                    assert (await r.json()) == {"deployedModelId": "m"}
                assert prediction.seen[0].endpoint == "projects/p/locations/l/endpoints/m"
                async with http.get(base + "/v1/projects/p/locations/l/operations/known") as r:
                    body = await r.json()
                    assert r.status == 200 and body["name"] == "projects/p/locations/l/models/m/operations/known"
                    assert "done" not in body and r.headers["x-request-id"]
                async with http.get(base + "/v1beta1/projects/p/locations/l/operations/other") as r:
                    error = (await r.json())["error"]
                    assert r.status == 404 and error["status"] == "NOT_FOUND"
                    assert error["details"][0]["fieldViolations"][0]["field"] == "name"
                async with http.post(base + PREDICT, data=b"x" * 2048) as r:
                    assert r.status == 413 and (await r.json())["error"]["code"] == 413
                async with http.post(base + "/v2/projects/p/locations/l/endpoints/m:predict", json={}) as r:
                    assert r.status == 404
        finally:
            await rest.stop()

    _run(scenario())
    assert metrics.http_requests.labels("predict", "200")._value.get() == 1
    assert metrics.http_requests.labels("get_operation", "404")._value.get() == 1
    assert metrics.http_requests.labels("unmatched", "404")._value.get() == 1


def test_draining_and_the_concurrency_bound(api):
    rest, prediction, admission, _ = api

    async def scenario():
        base = await _started(rest)
        try:
            async with aiohttp.ClientSession() as http:
                prediction.release.clear()
                held = [asyncio.create_task(http.post(base + PREDICT, json={"instances": [1]})) for _ in range(2)]
                while len(prediction.seen) < 2:
                    await asyncio.sleep(0.01)
                async with http.post(base + PREDICT, json={"instances": [1]}) as r:
                    assert r.status == 429 and (await r.json())["error"]["status"] == "RESOURCE_EXHAUSTED"
                prediction.release.set()
                assert [(await t).status for t in held] == [200, 200]
                admission.start_draining()
                async with http.post(base + PREDICT, json={"instances": [1]}) as r:
                    assert r.status == 503 and (await r.json())["error"]["status"] == "UNAVAILABLE"
        finally:
            await rest.stop()

    _run(scenario())
