"""One admission for every surface: a real grpc.aio server and the real REST
port on loopback share one Admission, so --max-concurrent-calls, the drain and
the access log count gRPC and REST calls together."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys

import aiohttp
import grpc
import pytest

from explaind.server.admission import Admission, new_request_id, request_id_of
from explaind.server.interceptors import AdmissionInterceptor
from explaind.server.logging_setup import JsonFormatter
from explaind.server.metrics import Metrics
from explaind.server.vertex.rest import RestApi
from explaind.vertex.v1 import prediction_service_pb2 as v1

pytestmark = pytest.mark.timeout(60)

SERVICE = "explaind.v1.PredictionService"
PREDICT = "/v1/projects/p/locations/l/endpoints/m:predict"


class Held:
    """Handlers of both surfaces that wait for `release`, counting those waiting."""

    def __init__(self):
        self.release = asyncio.Event()
        self.release.set()
        self.waiting = 0

    async def _wait(self):
        self.waiting += 1
        try:
            await asyncio.wait_for(self.release.wait(), 20)
        finally:
            self.waiting -= 1

    async def hold(self, request, context):            # gRPC
        await self._wait()
        return b"released"

    async def predict(self, request, deadline):        # REST, through VertexPrediction's place
        await self._wait()
        return v1.PredictResponse(deployed_model_id="m")


class Surfaces:
    def __init__(self, admission: Admission, held: Held):
        self.admission, self.held = admission, held

    async def __aenter__(self):
        self.server = grpc.aio.server(interceptors=[AdmissionInterceptor(self.admission)])
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            SERVICE, {"Hold": grpc.unary_unary_rpc_method_handler(self.held.hold)}),))
        grpc_port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.rest = RestApi(self.held, control=None, admission=self.admission, max_body_bytes=1024)
        self.base = f"http://127.0.0.1:{await self.rest.start('127.0.0.1', 0, 1.0)}"
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc):
        self.held.release.set()
        await self.http.close()
        await self.channel.close()
        await self.rest.stop()
        await self.server.stop(0)

    def grpc_call(self, request_id: str = "g"):
        return self.channel.unary_unary(f"/{SERVICE}/Hold")(b"", timeout=20, metadata=(("x-request-id", request_id),))

    async def rest_call(self, request_id: str = "r") -> tuple[int, dict]:
        async with self.http.post(self.base + PREDICT, json={"instances": [1]},
                                  headers={"x-request-id": request_id}) as r:
            return r.status, await r.json()

    async def until_waiting(self, n: int):
        for _ in range(2000):
            if self.held.waiting == n:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{self.held.waiting} calls waiting, expected {n}")


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 50))


def test_the_limit_holds_across_grpc_and_rest_together():
    metrics = Metrics(gpu_memory=False)
    admission = Admission(metrics, max_concurrent_calls=2)

    async def scenario():
        async with Surfaces(admission, Held()) as s:
            # Two held on gRPC: REST is at the limit.
            s.held.release.clear()
            held = [asyncio.ensure_future(s.grpc_call()) for _ in range(2)]
            await s.until_waiting(2)
            status, body = await s.rest_call()
            assert status == 429 and body["error"]["status"] == "RESOURCE_EXHAUSTED"
            assert "2 concurrent calls" in body["error"]["message"]
            s.held.release.set()
            assert await asyncio.gather(*held) == [b"released"] * 2
            # Two held on REST: gRPC is at the limit.
            s.held.release.clear()
            held = [asyncio.ensure_future(s.rest_call()) for _ in range(2)]
            await s.until_waiting(2)
            assert admission.active == 2
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await s.grpc_call()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "2 concurrent calls" in refused.value.details()
            # One of each: the third call, on either surface, is refused.
            s.held.release.set()
            assert [status for status, _ in await asyncio.gather(*held)] == [200, 200]
            s.held.release.clear()
            held = [asyncio.ensure_future(s.grpc_call()), asyncio.ensure_future(s.rest_call())]
            await s.until_waiting(2)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await s.grpc_call()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (await s.rest_call())[0] == 429
            s.held.release.set()
            grpc_answer, (rest_status, _) = await asyncio.gather(*held)
            assert grpc_answer == b"released" and rest_status == 200
            assert admission.active == 0
            assert (await s.rest_call())[0] == 200 and await s.grpc_call() == b"released"

    run(scenario())
    assert metrics.registry.get_sample_value("explaind_rejected_calls_total", {"reason": "concurrency_limit"}) == 4


def test_the_drain_refuses_and_waits_for_both_surfaces():
    metrics = Metrics(gpu_memory=False)
    admission = Admission(metrics, max_concurrent_calls=10)

    async def scenario():
        async with Surfaces(admission, Held()) as s:
            s.held.release.clear()
            held = [asyncio.ensure_future(s.grpc_call()), asyncio.ensure_future(s.rest_call())]
            await s.until_waiting(2)
            assert admission.inflight == 2
            assert metrics.registry.get_sample_value("explaind_inflight_calls") == 2
            admission.start_draining()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await s.grpc_call()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            status, body = await s.rest_call()
            assert status == 503 and body["error"]["status"] == "UNAVAILABLE"
            assert await admission.wait_idle(0.05) is False     # the REST call still counts
            idle = asyncio.ensure_future(admission.wait_idle(10))
            s.held.release.set()
            grpc_answer, (rest_status, _) = await asyncio.gather(*held)
            assert grpc_answer == b"released" and rest_status == 200
            assert await idle is True and admission.inflight == 0

    run(scenario())
    assert metrics.registry.get_sample_value("explaind_inflight_calls") == 0
    assert metrics.registry.get_sample_value("explaind_rejected_calls_total", {"reason": "draining"}) == 2


def test_one_access_log_for_both_surfaces():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.admission.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    admission = Admission(Metrics(gpu_memory=False), max_concurrent_calls=1, logger=logger)

    async def scenario():
        async with Surfaces(admission, Held()) as s:
            assert await s.grpc_call("id-grpc") == b"released"
            assert (await s.rest_call("id-rest"))[0] == 200
            s.held.release.clear()
            held = asyncio.ensure_future(s.grpc_call("id-held"))
            await s.until_waiting(1)
            assert (await s.rest_call("x" * 500))[0] == 429
            s.held.release.set()
            await held

    run(scenario())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["id-grpc"]["method"] == f"/{SERVICE}/Hold" and by_id["id-grpc"]["code"] == "OK"
    assert by_id["id-rest"]["method"] == f"POST {PREDICT}" and by_id["id-rest"]["code"] == 200
    refused = by_id["x" * 128]            # the caller's id, bounded as on gRPC
    assert refused["code"] == 429
    for line in lines:
        assert line["duration_ms"] >= 0 and "127.0.0.1" in line["peer"]


def test_new_request_ids_are_unique_32_hex_digits_in_each_process():
    ids = [request_id_of(None) for _ in range(5000)] + [request_id_of(b""), new_request_id()]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    code = "from explaind.server.admission import new_request_id; print(new_request_id())"
    other = subprocess.check_output([sys.executable, "-c", code], text=True).strip()
    assert re.fullmatch("[0-9a-f]{32}", other) and other[:16] != ids[0][:16]     # another process, another prefix
    prefix = new_request_id.prefix
    new_request_id.reset()      # what a forked child runs
    assert new_request_id.prefix != prefix and new_request_id() not in ids
    assert request_id_of("caller-id") == "caller-id" and len(request_id_of("x" * 500)) == 128
