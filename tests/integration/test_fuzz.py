"""Every RPC of a real daemon on loopback gets a thousand random messages built
from the proto descriptors (tests/fuzzing.py): each is answered with a status
other than UNKNOWN or INTERNAL, the daemon stays up, logs no error, and its
memory stays bounded. tools/fuzz.py runs the same for longer."""
from __future__ import annotations

import json
import os

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from tests import fuzzing

PER_METHOD = int(os.environ.get("EXPLAIND_FUZZ_PER_METHOD", "1000"))
RSS_GROWTH_BOUND = 256 * 2**20


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    server, pools, tokens = fuzzing.prepare(str(tmp_path_factory.mktemp("fuzz")))
    yield server, pools, tokens
    server.kill()


@pytest.mark.timeout(600)
def test_random_messages_to_every_rpc(target):
    server, pools, tokens = target
    report = fuzzing.run(server.target, server.proc.pid, pools, tokens, per_method=PER_METHOD, seed=20261203,
                         alive=lambda: server.proc.poll() is None)
    assert server.proc.poll() is None, server.log_tail()
    assert not report.faults, report.faults[:5]
    by_method = report.by_method()
    assert set(by_method) == {path for path, _ in fuzzing.methods()}
    assert report.calls >= 12 * PER_METHOD
    # The fuzz reached past the first checks: the seeds' mutations got real answers.
    for path in ("/explaind.v1.PredictionService/Explain", "/explaind.v1.ModelService/GetModel",
                 "/google.longrunning.Operations/ListOperations"):
        assert by_method[path].get("OK", 0) > 0, (path, by_method[path])
    for path, codes in by_method.items():
        if path.startswith(("/explaind", "/google")):
            assert codes.get("UNAUTHENTICATED", 0) > 0 and codes.get("INVALID_ARGUMENT", 0) > 0, (path, codes)
    warm = report.rss[0][1]
    assert max(rss for _, rss in report.rss) - warm < RSS_GROWTH_BOUND, report.rss
    errors = [json.loads(line) for line in server.log_tail(10**8).splitlines()
              if line.startswith("{") and '"level": "ERROR"' in line]
    assert not errors, errors[:3]


def test_cancelled_streams_leave_the_daemon_up(target):
    """Found by the fuzz: a client that cancels a streaming call (reflection) made the
    access log ask grpc for the call's peer after the call ended, which crashed the
    process (SIGSEGV)."""
    server, _, _ = target
    request = reflection_pb2.ServerReflectionRequest(list_services="").SerializeToString()
    with grpc.insecure_channel(server.target) as channel:
        stub = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        for _ in range(40):
            call = stub(iter([request]), timeout=10)
            for _response in call:
                call.cancel()
                break
        assert server.proc.poll() is None
        answer = reflection_pb2.ServerReflectionResponse.FromString(next(iter(stub(iter([request]), timeout=10))))
        assert "explaind.v1.PredictionService" in {s.name for s in answer.list_services_response.service}
