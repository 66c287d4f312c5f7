"""The gRPC side of admission (admission.py): `AdmissionInterceptor` does each
call's request id, metrics, auth, drain, concurrency limit and access log in
one scope around the handler (an async context manager), so it sees how the
call ended: normally, through context.abort(...), by an exception, or
cancelled.

In the scope, in order: the request id (trailers, log context) and the
metrics' start, so refused calls are still logged and counted; then
Admission.admit (auth, drain, limit: unauthenticated calls never count as in
flight); the handler; then the metrics and the access-log line.
DecodeInterceptor (security/decoding.py) goes inside it, so request bytes are
parsed last, inside every check.

Only async behaviours (what grpc.aio servicers have) are wrapped; a sync
behaviour passes through unwrapped, since wrapping it in a coroutine would
hand it the async context it does not expect. (In the daemon DecodeInterceptor,
innermost, has already made every behaviour async; with an authorizer the
interceptor refuses a behaviour it could not wrap.)
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from typing import AsyncContextManager, Callable

import grpc
from grpc import aio

from explaind.server.admission import EXEMPT_SERVICES, REQUEST_ID_KEY, Admission, request_id_of
from explaind.server.logging_setup import request_id_var
from explaind.server.metrics import split_method
from explaind.server.security.auth import peer_certificate_names, refusing_handler

# Codes that point at the server (logged as warnings); the rest are the caller's business.
SERVER_SIDE_CODES = frozenset({
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
})

CallScope = Callable[[grpc.HandlerCallDetails, aio.ServicerContext], AsyncContextManager]


def grpc_type_of(handler: grpc.RpcMethodHandler) -> str:
    """go-grpc-prometheus's grpc_type label."""
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def status_of(context: aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    """The status code the server sends for a call that ended with `exc` (None: returned)."""
    code = context.code()
    if not isinstance(code, grpc.StatusCode):
        code = None
    if exc is None:
        return code or grpc.StatusCode.OK
    if isinstance(exc, asyncio.CancelledError):
        # The core cancels the handler when the client goes away or the deadline passes.
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    if isinstance(exc, aio.AbortError):
        return code or grpc.StatusCode.UNKNOWN
    # grpc.aio sends UNKNOWN for an exception unless the handler set a code first.
    return code if code not in (None, grpc.StatusCode.OK) else grpc.StatusCode.UNKNOWN


def wrap_handler(handler: grpc.RpcMethodHandler, details: grpc.HandlerCallDetails,
                 scope: CallScope) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behaviour runs inside `scope(details, context)`."""
    if handler.unary_unary is not None:
        kind, behaviour = "unary_unary", handler.unary_unary
    elif handler.unary_stream is not None:
        kind, behaviour = "unary_stream", handler.unary_stream
    elif handler.stream_unary is not None:
        kind, behaviour = "stream_unary", handler.stream_unary
    else:
        kind, behaviour = "stream_stream", handler.stream_stream

    if inspect.isasyncgenfunction(behaviour):
        @functools.wraps(behaviour)
        async def wrapped(request, context):
            async with scope(details, context):
                async for response in behaviour(request, context):
                    yield response
    elif inspect.iscoroutinefunction(behaviour):
        @functools.wraps(behaviour)
        async def wrapped(request, context):
            async with scope(details, context):
                return await behaviour(request, context)
    else:
        return handler  # sync behaviour: see the module docstring

    if hasattr(handler, "_replace"):  # grpc's own handlers are namedtuples
        return handler._replace(**{kind: wrapped})
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(wrapped, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class AdmissionInterceptor(aio.ServerInterceptor):
    """Every call through `admission`, in one scope (see the module docstring).

    The request id always goes out in the trailers. With `send_initial_metadata`
    it also goes out in the response headers at the start of the call (so a
    handler must not send initial metadata itself); that costs one more write
    per call, about a quarter of a millisecond, so the server leaves it off.
    """

    def __init__(self, admission: Admission, send_initial_metadata: bool = False):
        self.admission = admission
        self._send_initial = send_initial_metadata

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself (uncounted, as in go-grpc-prometheus)
            return None
        grpc_type = grpc_type_of(handler)
        wrapped = wrap_handler(handler, handler_call_details,
                               lambda details, context: self.scope(details, context, grpc_type))
        if wrapped is handler and self.admission.authorizer is not None:
            # a sync behaviour the scope cannot wrap, so its caller cannot be checked: fail closed
            return refusing_handler(handler, "this method's handler is synchronous, so its caller cannot be "
                                             "checked; refused")
        return wrapped

    @contextlib.asynccontextmanager
    async def scope(self, details: grpc.HandlerCallDetails, context: aio.ServicerContext, grpc_type: str):
        admission, metrics = self.admission, self.admission.metrics
        service, method = split_method(details.method)
        labels = (grpc_type, service, method)
        exempt = service in EXEMPT_SERVICES
        request_id = request_id_of(_metadata_value(context.invocation_metadata(), REQUEST_ID_KEY))
        peer = _peer(context)     # now: after a client cancels a stream, context.peer() crashes the process
        token = request_id_var.set(request_id)
        if metrics is not None:
            metrics.grpc_started.labels(*labels).inc()
        start = time.perf_counter()
        exc: BaseException | None = None
        try:
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            if self._send_initial:
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
            refusal = admission.admit(details.method, lambda: _credentials(context, admission.authorizer), exempt)
            if refusal is not None:
                await context.abort(refusal.code, refusal.message)
            if exempt:
                yield
            else:
                # In flight until its status has gone out, after the handler returns: the
                # shutdown closes the connections once idle, and must not cut a response.
                context.add_done_callback(admission.done)
                try:
                    yield
                finally:
                    admission.release()
        except BaseException as e:
            exc = e
            raise
        finally:
            if exc is None and not context.done():
                _keep_request_id_trailer(context, request_id)
            code = status_of(context, exc)
            seconds = time.perf_counter() - start
            if metrics is not None:
                metrics.grpc_handling_seconds.labels(*labels).observe(seconds)
                metrics.grpc_handled.labels(*labels, code.name).inc()
            admission.log_call(details.method, code.name, code in SERVER_SIDE_CODES, seconds, request_id, peer)
            try:
                request_id_var.reset(token)
            except ValueError:    # a cancelled stream's generator is closed from another context
                pass


def _metadata_value(metadata, key: str):
    for k, value in metadata or ():
        if k.lower() == key and value:
            return value
    return None


def _credentials(context: aio.ServicerContext, authorizer):
    authorization = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
    names, shown = peer_certificate_names(context) if authorizer.identities is not None else (set(), "")
    return authorization, names, shown


def _keep_request_id_trailer(context, request_id: str) -> None:
    """The handler may have replaced the trailing metadata; put the id back."""
    trailer = tuple(context.trailing_metadata() or ())
    if not any(k == REQUEST_ID_KEY for k, _ in trailer):
        context.set_trailing_metadata(trailer + ((REQUEST_ID_KEY, request_id),))


def _peer(context) -> str:
    try:
        return context.peer()
    except Exception:
        return ""
