"""Every method the daemon registers, called with each kind of credential through a
real server on loopback: the role table covers them all, and each answers as
its role says. The list comes from the server itself, so a service added
later is walked too."""
from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from google.protobuf import descriptor_pool

from explaind.server.app import Daemon
from explaind.server.config import Settings
from explaind.server.security import uris
from explaind.server.security.roles import ADMIN, OPEN, required_role, uncovered
from explaind.server.vertex.jobs import SERVICES as VERTEX_JOB_SERVICES
from explaind.server.vertex.prediction import METHODS as VERTEX_METHODS
from explaind.server.vertex.services import SERVICES as VERTEX_RESOURCES

AUTH_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
CREDENTIALS = {"none": None, "bogus": "Bearer not-a-token", "predict": "Bearer p-token", "admin": "Bearer a-token"}


def expected(role, who: str, control_disabled: bool = False):
    """The auth outcome: an auth status code, or None (the call reaches its servicer)."""
    if role is OPEN:
        return None
    if role is ADMIN and control_disabled:
        return grpc.StatusCode.PERMISSION_DENIED
    if who in ("none", "bogus"):
        return grpc.StatusCode.UNAUTHENTICATED
    if role is ADMIN and who == "predict":
        return grpc.StatusCode.PERMISSION_DENIED
    return None


def streaming(service: str, method: str) -> tuple[bool, bool]:
    """(client streaming, server streaming); Vertex's hand-registered methods are unary."""
    if service in VERTEX_METHODS or service in VERTEX_RESOURCES or service in VERTEX_JOB_SERVICES:
        return False, False
    descriptor = descriptor_pool.Default().FindServiceByName(service).methods_by_name[method]
    return descriptor.client_streaming, descriptor.server_streaming


async def call(channel, path: str, authorization: str | None) -> grpc.StatusCode:
    service, method = path.strip("/").split("/")
    client_streaming, server_streaming = streaming(service, method)
    metadata = (("authorization", authorization),) if authorization else None
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[
        (client_streaming, server_streaming)]
    stub = kind(path)           # no serializers: the empty request is b"", any message's default
    try:
        if client_streaming:
            responses = stub(iter([b""]), metadata=metadata, timeout=5)
        else:
            responses = stub(b"", metadata=metadata, timeout=5)
        if server_streaming:
            async for _ in responses:
                break
            responses.cancel()
        else:
            await responses
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as e:
        return e.code()


def walk(tmp_path, **settings):
    tokens = tmp_path / "tokens"
    tokens.write_text("admin a-token\npredict p-token\n")
    config = dataclasses.replace(Settings(), host="127.0.0.1", port=0, metrics_port=0,
                                 store=str(tmp_path / "store"), cache_dir=str(tmp_path / "cache"),
                                 auth_tokens_file=str(tokens), **settings)
    previous = uris.policy()

    async def run():
        daemon = Daemon(config)
        await daemon.start()
        try:
            registered = daemon.server.registered
            outcomes = {}
            async with grpc.aio.insecure_channel(f"127.0.0.1:{daemon.port}") as channel:
                for service, methods in sorted(registered.items()):
                    for method in sorted(methods):
                        path = f"/{service}/{method}"
                        for who, authorization in CREDENTIALS.items():
                            outcomes[path, who] = await call(channel, path, authorization)
            rejected = {labels: value for labels, value in _rejected(daemon)}
            return registered, outcomes, rejected
        finally:
            await daemon.stop()
    try:
        return asyncio.run(run())
    finally:
        uris.install(previous)


def _rejected(daemon):
    for family in daemon.metrics.registry.collect():
        if family.name == "explaind_rejected_calls":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    yield sample.labels["reason"], sample.value


@pytest.mark.timeout(300)
def test_every_registered_method_answers_by_its_role(tmp_path):
    registered, outcomes, rejected = walk(tmp_path)
    assert {"explaind.v1.ModelService", "explaind.v1.PredictionService", "google.longrunning.Operations",
            "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= set(registered)
    assert uncovered(registered) == []
    assert sum(len(m) for m in registered.values()) >= 16
    refused = {"unauthenticated": 0, "permission_denied": 0}
    for (path, who), code in outcomes.items():
        want = expected(required_role(path), who)
        if want is None:
            assert code not in AUTH_CODES, (path, who, code)
        else:
            assert code == want, (path, who, code)
            refused["unauthenticated" if want == grpc.StatusCode.UNAUTHENTICATED else "permission_denied"] += 1
        assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (path, who, code)
    # Each kind of refusal happened and was counted.
    assert refused["unauthenticated"] > 0 and refused["permission_denied"] > 0
    assert rejected == {k: float(v) for k, v in refused.items()}
    # A predict caller can read: the roles gave it something, not just refusals.
    assert outcomes["/explaind.v1.ModelService/ListModels", "predict"] == grpc.StatusCode.OK
    assert outcomes["/explaind.v1.ModelService/ListModels", "admin"] == grpc.StatusCode.OK


@pytest.mark.timeout(300)
def test_read_only_replica_without_reflection(tmp_path):
    registered, outcomes, _ = walk(tmp_path, disable_model_uploads=True, disable_reflection=True)
    assert not [s for s in registered if "Reflection" in s]
    admin_methods = [p for (p, who) in outcomes if required_role(p) is ADMIN and who == "admin"]
    # explaind.v1's five and BatchExplain, and Vertex's ModelService and EndpointService writes (8 in v1 and
    # v1beta1 each) and JobService's create, cancel and delete (3 each).
    assert len(admin_methods) == 6 + 2 * 8 + 2 * 3
    for (path, who), code in outcomes.items():
        want = expected(required_role(path), who, control_disabled=True)
        if want is None:
            assert code not in AUTH_CODES, (path, who, code)
        else:
            assert code == want, (path, who, code)
    assert outcomes["/explaind.v1.PredictionService/Explain", "predict"] not in AUTH_CODES
