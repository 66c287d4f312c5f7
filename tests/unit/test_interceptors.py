"""The admission interceptor on a real grpc.aio server: limits, drain, request id + access log, status mapping."""
from __future__ import annotations

import asyncio
import io
import json
import logging

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from explaind.server.admission import Admission
from explaind.server.interceptors import AdmissionInterceptor
from explaind.server.logging_setup import JsonFormatter, request_id_var
from explaind.server.metrics import Metrics

pytestmark = pytest.mark.timeout(30)

SERVICE = "explaind.v1.PredictionService"


class Handlers:
    """Unary-unary handlers on bytes; `Hold` waits until released."""

    def __init__(self):
        self.release = asyncio.Event()
        self.holding = 0
        self.seen_request_ids: list = []

    async def echo(self, request, context):
        self.seen_request_ids.append(request_id_var.get())
        return b"echo:" + request

    async def hold(self, request, context):
        self.holding += 1
        try:
            await asyncio.wait_for(self.release.wait(), 10)
        finally:
            self.holding -= 1
        return b"released"

    async def invalid(self, request, context):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad instance")

    async def slow(self, request, context):
        await asyncio.sleep(2)
        return b"slow"

    async def broken(self, request, context):
        await context.abort(grpc.StatusCode.INTERNAL, "a server fault")

    async def stream(self, request, context):  # unary-stream, async generator
        for i in range(3):
            yield b"%d" % i

    def generic_handler(self):
        unary = {name: grpc.unary_unary_rpc_method_handler(getattr(self, name.lower()))
                 for name in ("Echo", "Hold", "Invalid", "Slow", "Broken")}
        unary["Stream"] = grpc.unary_stream_rpc_method_handler(self.stream)
        return grpc.method_handlers_generic_handler(SERVICE, unary)


async def start_server(handlers: Handlers, interceptors):
    server = grpc.aio.server(interceptors=interceptors)
    server.add_generic_rpc_handlers((handlers.generic_handler(),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def wait_until(predicate, timeout: float = 5.0):
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached in time")


def call(channel, name):
    return channel.unary_unary(f"/{SERVICE}/{name}")


async def health_check(channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return response.status


def run(coro, timeout: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_concurrency_limit_rejects_at_once_and_exempts_health():
    metrics = Metrics(gpu_memory=False)

    async def main():
        handlers = Handlers()
        limits = Admission(metrics, max_concurrent_calls=2)
        server, port = await start_server(handlers, [AdmissionInterceptor(limits)])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                held = [asyncio.ensure_future(call(channel, "Hold")(b"", timeout=10)) for _ in range(2)]
                await wait_until(lambda: handlers.holding == 2)
                assert limits.active == 2
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(channel, "Echo")(b"x", timeout=5)
                assert loop.time() - t0 < 1.0
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "2 concurrent calls" in err.value.details()
                assert await health_check(channel) == health_pb2.HealthCheckResponse.SERVING
                handlers.release.set()
                assert await asyncio.gather(*held) == [b"released", b"released"]
                assert limits.active == 0
                assert await call(channel, "Echo")(b"after", timeout=5) == b"echo:after"
        finally:
            await server.stop(0)

    run(main())
    assert metrics.registry.get_sample_value("explaind_rejected_calls_total", {"reason": "concurrency_limit"}) == 1
    assert metrics.registry.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Echo", "grpc_code": "RESOURCE_EXHAUSTED"}) == 1
    # health checks are counted by the metrics interceptor even though limits exempt them
    assert metrics.registry.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check",
        "grpc_code": "OK"}) == 1


def test_drain_refuses_new_calls_while_inflight_calls_finish():
    metrics = Metrics(gpu_memory=False)

    async def main():
        handlers = Handlers()
        drain = Admission(metrics, max_concurrent_calls=10)
        server, port = await start_server(handlers, [AdmissionInterceptor(drain)])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                held = [asyncio.ensure_future(call(channel, "Hold")(b"", timeout=10)) for _ in range(3)]
                await wait_until(lambda: handlers.holding == 3)
                assert drain.inflight == 3
                assert metrics.registry.get_sample_value("explaind_inflight_calls") == 3
                assert await drain.wait_idle(0.05) is False
                drain.start_draining()
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(channel, "Echo")(b"x", timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "shutting down" in err.value.details()
                assert await health_check(channel) == health_pb2.HealthCheckResponse.SERVING  # exempt
                idle = asyncio.ensure_future(drain.wait_idle(5))
                await asyncio.sleep(0.02)
                assert not idle.done()
                handlers.release.set()
                assert await asyncio.gather(*held) == [b"released"] * 3
                assert await idle is True
                assert drain.inflight == 0
        finally:
            await server.stop(0)

    run(main())
    assert metrics.registry.get_sample_value("explaind_inflight_calls") == 0
    assert metrics.registry.get_sample_value("explaind_rejected_calls_total", {"reason": "draining"}) == 1
    assert metrics.registry.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Echo", "grpc_code": "UNAVAILABLE"}) == 1


@pytest.fixture
def access_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("explaind.access")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def test_request_id_is_echoed_exposed_and_logged(access_lines):
    handlers = Handlers()

    async def main():
        interceptors = [AdmissionInterceptor(Admission(Metrics(gpu_memory=False)), send_initial_metadata=True)]
        server, port = await start_server(handlers, interceptors)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                c = call(channel, "Echo")(b"a", metadata=(("x-request-id", "req-123"),), timeout=5)
                assert await c == b"echo:a"
                assert ("x-request-id", "req-123") in tuple(await c.initial_metadata())
                assert ("x-request-id", "req-123") in tuple(await c.trailing_metadata())

                c = call(channel, "Echo")(b"b", timeout=5)
                await c
                generated = dict(await c.trailing_metadata())["x-request-id"]
                assert len(generated) == 32

                c = call(channel, "Invalid")(b"", metadata=(("x-request-id", "req-bad"),), timeout=5)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await c
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert ("x-request-id", "req-bad") in tuple(err.value.trailing_metadata())

                responses = [r async for r in channel.unary_stream(f"/{SERVICE}/Stream")(b"", timeout=5)]
                assert responses == [b"0", b"1", b"2"]
            return generated
        finally:
            await server.stop(0)

    generated = run(main())
    assert handlers.seen_request_ids == ["req-123", generated]
    lines = access_lines()
    assert [(line["method"], line["code"], line["request_id"]) for line in lines[:3]] == [
        (f"/{SERVICE}/Echo", "OK", "req-123"),
        (f"/{SERVICE}/Echo", "OK", generated),
        (f"/{SERVICE}/Invalid", "INVALID_ARGUMENT", "req-bad"),
    ]
    assert lines[3]["method"] == f"/{SERVICE}/Stream" and lines[3]["code"] == "OK"
    for line in lines:
        assert line["logger"] == "explaind.access"
        assert line["duration_ms"] >= 0
        assert "127.0.0.1" in line["peer"]
    assert lines[0]["level"] == lines[2]["level"] == "INFO"  # a caller's error is no server warning


def test_deadline_and_streams_are_counted_with_their_codes():
    metrics = Metrics(gpu_memory=False)

    async def main():
        handlers = Handlers()
        server, port = await start_server(handlers, [AdmissionInterceptor(Admission(metrics))])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(channel, "Slow")(b"", timeout=0.1)
                assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert [r async for r in channel.unary_stream(f"/{SERVICE}/Stream")(b"", timeout=5)] == [
                    b"0", b"1", b"2"]

                def handled(method, code, grpc_type="unary"):
                    return metrics.registry.get_sample_value("grpc_server_handled_total", {
                        "grpc_type": grpc_type, "grpc_service": SERVICE, "grpc_method": method, "grpc_code": code})

                await wait_until(lambda: handled("Slow", "DEADLINE_EXCEEDED") == 1)
                assert handled("Stream", "OK", "server_stream") == 1
        finally:
            await server.stop(0)

    run(main())


def test_a_methods_handler_is_wrapped_once_and_again_when_its_service_changes():
    interceptor = AdmissionInterceptor(Admission(Metrics(gpu_memory=False)), decode=True)
    handlers = Handlers()
    current = {"handler": grpc.unary_unary_rpc_method_handler(handlers.echo, request_deserializer=bytes)}

    class Details:
        method = f"/{SERVICE}/Echo"
        invocation_metadata = ()

    async def continuation(_details):
        return current["handler"]

    async def main():
        first = await interceptor.intercept_service(continuation, Details())
        again = await interceptor.intercept_service(continuation, Details())
        current["handler"] = grpc.unary_unary_rpc_method_handler(handlers.hold, request_deserializer=bytes)
        replaced = await interceptor.intercept_service(continuation, Details())
        return first, again, replaced

    first, again, replaced = run(main())
    assert again is first
    assert replaced is not first and replaced.unary_unary.__name__ == "hold"
    assert first.request_deserializer is None        # decoded inside the scope, not by grpc


@pytest.mark.parametrize("sample,every", [(1.0, 1), (0.25, 4), (0.3, 3), (0.0, 0)])
def test_a_sampled_access_log_keeps_every_field_and_every_server_fault(access_lines, sample, every):
    metrics = Metrics(gpu_memory=False)

    async def main():
        server, port = await start_server(Handlers(), [AdmissionInterceptor(Admission(metrics,
                                                                                      access_log_sample=sample))])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for i in range(12):
                    await call(channel, "Echo")(b"", metadata=(("x-request-id", f"ok-{i}"),), timeout=5)
                for i in range(4):
                    with pytest.raises(grpc.aio.AioRpcError):
                        await call(channel, "Broken")(b"", metadata=(("x-request-id", f"fault-{i}"),), timeout=5)
        finally:
            await server.stop(0)

    run(main())
    lines = access_lines()
    ok = [line for line in lines if line["code"] == "OK"]
    faults = [line for line in lines if line["code"] == "INTERNAL"]
    assert [line["request_id"] for line in ok] == [f"ok-{i}" for i in range(12) if every and (i + 1) % every == 0]
    assert [line["request_id"] for line in faults] == [f"fault-{i}" for i in range(4)]     # never sampled away
    for line in ok:
        assert {"time", "level", "logger", "message", "method", "code", "duration_ms", "request_id", "peer"} <= \
            set(line)
        assert line["method"] == f"/{SERVICE}/Echo" and line["level"] == "INFO" and "127.0.0.1" in line["peer"]
        assert ("sample" in line) == (every != 1) and line.get("sample", 1.0) == pytest.approx(1 / every)
    assert all(line["level"] == "WARNING" and "sample" not in line for line in faults)
    # The metrics count every call, sampled or not.
    assert metrics.registry.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "unary", "grpc_service": SERVICE, "grpc_method": "Echo", "grpc_code": "OK"}) == 12


def test_access_log_sample_outside_zero_to_one_is_refused():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="access_log_sample"):
            Admission(access_log_sample=bad)
