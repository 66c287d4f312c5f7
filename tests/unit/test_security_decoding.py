"""The decoding interceptor on a real grpc.aio server: undecodable bytes are
INVALID_ARGUMENT for every kind of method, sync behaviours become async (so
the auth check wraps them), and without it a sync behaviour is refused rather
than served unchecked."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2

from explaind.server.admission import Admission
from explaind.server.interceptors import AdmissionInterceptor
from explaind.server.security.auth import Authorizer
from explaind.server.security.decoding import DecodeInterceptor
from explaind.server.security.identities import TokenRoles

Request, Response = health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
SERVING = Response(status=Response.SERVING).SerializeToString()
# Paths the role table knows: GetModel needs predict; Check is open.
GUARDED, OPEN = "explaind.v1.ModelService", "grpc.health.v1.Health"


async def unary(request, context):
    assert isinstance(request, Request)
    return Response(status=Response.SERVING)


async def unary_stream(request, context):
    assert isinstance(request, Request)
    for _ in range(2):
        yield Response(status=Response.SERVING)


async def stream_stream(requests, context):
    async for request in requests:
        assert isinstance(request, Request)
        yield Response(status=Response.SERVING)


def sync_unary(request, context):
    assert isinstance(request, Request)
    return Response(status=Response.SERVING)


def sync_stream(request, context):
    yield Response(status=Response.SERVING)
    yield Response(status=Response.SERVING)


def sync_unimplemented(request, context):
    context.set_code(grpc.StatusCode.UNIMPLEMENTED)
    raise NotImplementedError("Method not implemented!")


def handlers(service: str) -> grpc.GenericRpcHandler:
    kw = dict(request_deserializer=Request.FromString, response_serializer=Response.SerializeToString)
    return grpc.method_handlers_generic_handler(service, {
        "Check": grpc.unary_unary_rpc_method_handler(unary, **kw),
        "GetModel": grpc.unary_unary_rpc_method_handler(sync_unary, **kw),
        "Watch": grpc.unary_stream_rpc_method_handler(unary_stream, **kw),
        "ListModels": grpc.unary_stream_rpc_method_handler(sync_stream, **kw),
        "DeleteModel": grpc.stream_stream_rpc_method_handler(stream_stream, **kw),
        "List": grpc.unary_unary_rpc_method_handler(sync_unimplemented, **kw),
    })


async def call(port: int, path: str, data: bytes, streaming: str = "", token: str | None = None):
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            if streaming == "unary_stream":
                return grpc.StatusCode.OK, [r async for r in channel.unary_stream(path)(data, metadata=metadata)]
            if streaming == "stream_stream":
                responses = channel.stream_stream(path)(iter([data]), metadata=metadata)
                return grpc.StatusCode.OK, [r async for r in responses]
            return grpc.StatusCode.OK, [await channel.unary_unary(path)(data, metadata=metadata)]
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details()


def serve_and(interceptors, service, check):
    async def main():
        server = grpc.aio.server(interceptors=interceptors)
        server.add_generic_rpc_handlers((handlers(service),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await check(port)
        finally:
            await server.stop(0)
    return asyncio.run(main())


GARBAGE = b"\xff\xff\xff\xff\x0f"
VALID = Request(service="x").SerializeToString()
# The two ways to decode: the interceptor alone, or the daemon's admission interceptor decoding itself.
DECODERS = {"DecodeInterceptor": lambda: [DecodeInterceptor()],
            "AdmissionInterceptor(decode=True)": lambda: [AdmissionInterceptor(Admission(), decode=True)]}


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("method,kind", [("Check", ""), ("GetModel", ""), ("Watch", "unary_stream"),
                                         ("ListModels", "unary_stream"), ("DeleteModel", "stream_stream")])
def test_every_kind_of_method_parses_inside_the_call(method, kind, decoder):
    async def check(port):
        path = f"/{OPEN}/{method}"
        good = await call(port, path, VALID, kind)
        bad = await call(port, path, GARBAGE, kind)
        again = await call(port, path, VALID, kind)      # the method's handler is made once, then reused
        return good, bad, again
    (good_code, responses), (bad_code, details), again = serve_and(DECODERS[decoder](), OPEN, check)
    assert again == (good_code, responses)
    assert good_code == grpc.StatusCode.OK and all(r == SERVING for r in responses) and responses
    assert bad_code == grpc.StatusCode.INVALID_ARGUMENT and "grpc.health.v1.HealthCheckRequest" in details


def test_without_the_interceptor_grpc_answers_garbage_with_a_server_fault():
    """Why the interceptor exists."""
    code, _ = serve_and([], OPEN, lambda port: call(port, f"/{OPEN}/Check", GARBAGE))
    assert code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


@pytest.mark.parametrize("decoder", DECODERS)
def test_sync_unimplemented_stub_answers_unimplemented(decoder):
    code, _ = serve_and(DECODERS[decoder](), OPEN, lambda port: call(port, f"/{OPEN}/List", VALID))
    assert code == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("one_interceptor", [False, True])
def test_sync_behaviours_are_checked_or_refused(tmp_path, one_interceptor):
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("predict p\n")
    admission = Admission(authorizer=Authorizer(TokenRoles(str(tokens_file))))
    auth = AdmissionInterceptor(admission)

    async def check(port):
        path = f"/{GUARDED}/GetModel"
        return (await call(port, path, VALID), await call(port, path, VALID, token="p"),
                await call(port, f"/{GUARDED}/ListModels", VALID, "unary_stream", token="p"))
    # Decoded first (innermost), the sync behaviour is async by the time auth wraps it.
    chain = [AdmissionInterceptor(admission, decode=True)] if one_interceptor else [auth, DecodeInterceptor()]
    (anonymous, _), (allowed, responses), (stream, streamed) = serve_and(chain, GUARDED, check)
    assert anonymous == grpc.StatusCode.UNAUTHENTICATED
    assert allowed == grpc.StatusCode.OK and responses == [SERVING]
    assert stream == grpc.StatusCode.OK and streamed == [SERVING, SERVING]
    # Without the decoder, auth cannot wrap a sync behaviour: it refuses it.
    (code, details), _, _ = serve_and([auth], GUARDED, check)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "synchronous" in details
