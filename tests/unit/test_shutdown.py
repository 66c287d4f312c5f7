"""GracefulShutdown: in process (trigger) and SIGTERM to a real child process."""
from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from explaind.server.admission import Admission
from explaind.server.interceptors import AdmissionInterceptor
from explaind.server.shutdown import GracefulShutdown

pytestmark = pytest.mark.timeout(40)

SERVICE = "explaind.v1.PredictionService"
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING

# The child: a server with a Slow method (announces itself on stdout, then
# sleeps), health, the drain switch and GracefulShutdown on SIGTERM.
CHILD = textwrap.dedent("""
    import asyncio, sys
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from explaind.server.admission import Admission
    from explaind.server.interceptors import AdmissionInterceptor
    from explaind.server.shutdown import GracefulShutdown

    SERVICE = "explaind.v1.PredictionService"

    async def slow(request, context):
        print("SLOW_STARTED", flush=True)
        await asyncio.sleep(float(request.decode()))
        return b"done:" + request

    async def serve():
        drain = Admission()
        server = grpc.aio.server(interceptors=[AdmissionInterceptor(drain)])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            SERVICE, {"Slow": grpc.unary_unary_rpc_method_handler(slow)}),))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        shutdown = GracefulShutdown(server, health=health_servicer, services=[SERVICE], drain=drain, grace_s=10)
        shutdown.install()
        print("PORT", port, flush=True)
        await shutdown.wait()
        print("STOPPED", flush=True)

    asyncio.run(serve())
""")


def read_lines(stream, lines: queue.Queue):
    for line in iter(stream.readline, ""):
        lines.put(line.strip())


def expect_line(lines: queue.Queue, prefix: str, timeout: float = 15.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=max(0.01, end - time.monotonic()))
        except queue.Empty:
            break
        if line.startswith(prefix):
            return line
    raise AssertionError(f"child never printed {prefix!r}")


def test_sigterm_drains_then_exits_zero(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        port = int(expect_line(lines, "PORT").split()[1])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            slow = channel.unary_unary(f"/{SERVICE}/Slow")
            health_stub = health_pb2_grpc.HealthStub(channel)
            assert health_stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5).status == SERVING

            inflight = slow.future(b"1.0", timeout=15)
            expect_line(lines, "SLOW_STARTED")
            proc.send_signal(signal.SIGTERM)

            # health flips to NOT_SERVING, for "" and the listed service
            for _ in range(200):
                status = health_stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
                if status == NOT_SERVING:
                    break
                time.sleep(0.01)
            assert status == NOT_SERVING
            assert health_stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5).status == NOT_SERVING

            # a new call is refused while the one in flight still runs
            with pytest.raises(grpc.RpcError) as err:
                slow(b"0", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in err.value.details()
            assert not inflight.done()

            assert inflight.result(timeout=15) == b"done:1.0"
        assert proc.wait(timeout=15) == 0
        expect_line(lines, "STOPPED", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_trigger_runs_the_same_sequence_in_process():
    events: list = []

    async def main():
        drain = Admission()
        server = grpc.aio.server(interceptors=[AdmissionInterceptor(drain)])
        release = asyncio.Event()

        async def hold(request, context):
            await release.wait()
            return b"held"

        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            SERVICE, {"Hold": grpc.unary_unary_rpc_method_handler(hold)}),))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await health_servicer.set(SERVICE, SERVING)

        shutdown = GracefulShutdown(server, health=health_servicer, services=[SERVICE], drain=drain,
                                    grace_s=5, on_stopped=lambda: events.append("on_stopped"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            held = asyncio.ensure_future(channel.unary_unary(f"/{SERVICE}/Hold")(b"", timeout=10))
            for _ in range(400):
                if drain.inflight:
                    break
                await asyncio.sleep(0.005)
            task = shutdown.trigger("test")
            assert shutdown.trigger() is task  # idempotent
            await asyncio.sleep(0.05)
            assert drain.draining and not task.done()
            status = (await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)).status
            assert status == NOT_SERVING
            # a later set() (say, from a model watcher) cannot turn it back on
            await health_servicer.set(SERVICE, SERVING)
            status = (await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)).status
            assert status == NOT_SERVING
            release.set()
            assert await held == b"held"
            await asyncio.wait_for(shutdown.wait(), 10)
            events.append("stopped")

    asyncio.run(asyncio.wait_for(main(), 20))
    assert events == ["on_stopped", "stopped"]


def test_grace_period_bounds_the_wait():
    async def main():
        drain = Admission()
        server = grpc.aio.server(interceptors=[AdmissionInterceptor(drain)])

        async def forever(request, context):
            await asyncio.sleep(30)
            return b""

        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            SERVICE, {"Forever": grpc.unary_unary_rpc_method_handler(forever)}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        shutdown = GracefulShutdown(server, drain=drain, grace_s=0.3)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stuck = asyncio.ensure_future(channel.unary_unary(f"/{SERVICE}/Forever")(b"", timeout=20))
            for _ in range(400):
                if drain.inflight:
                    break
                await asyncio.sleep(0.005)
            t0 = time.monotonic()
            shutdown.trigger()
            await asyncio.wait_for(shutdown.wait(), 10)
            assert time.monotonic() - t0 < 3
            with pytest.raises(grpc.aio.AioRpcError):
                await stuck

    asyncio.run(asyncio.wait_for(main(), 20))


def test_health_watch_streams_do_not_hold_the_exit():
    async def main():
        drain = Admission()
        server = grpc.aio.server(interceptors=[AdmissionInterceptor(drain)])
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await health_servicer.set("", SERVING)
        shutdown = GracefulShutdown(server, health=health_servicer, drain=drain, grace_s=10)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=15)
            statuses = []

            async def follow():
                async for response in watch:
                    statuses.append(response.status)

            follower = asyncio.ensure_future(follow())
            for _ in range(400):
                if statuses:
                    break
                await asyncio.sleep(0.005)
            assert drain.inflight == 0  # health is exempt from the drain count
            t0 = time.monotonic()
            shutdown.trigger()
            await asyncio.wait_for(shutdown.wait(), 10)
            assert time.monotonic() - t0 < 5  # not the 10 s grace
            try:
                await asyncio.wait_for(follower, 5)
            except grpc.aio.AioRpcError:
                pass  # the stream is cancelled by the stop
            assert statuses[0] == SERVING and NOT_SERVING in statuses

    asyncio.run(asyncio.wait_for(main(), 20))
