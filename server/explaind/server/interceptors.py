"""The gRPC side of admission (admission.py): `AdmissionInterceptor` does each
call's request id, metrics, auth, drain, concurrency limit and access log in
one scope around the handler, so it sees how the call ended: normally,
through context.abort(...), by an exception, or cancelled.

In the scope, in order: the request id (trailers, log context) and the
metrics' start, so refused calls are still logged and counted; then
Admission.admit (auth, drain, limit: unauthenticated calls never count as in
flight); the handler; then the metrics and the access-log line. Request
bytes are parsed last, inside every check: by the same interceptor
(`decode=True`, the daemon's) or by DecodeInterceptor (security/decoding.py)
placed inside it.

Each method's wrapped handler is made once, with its labels and metric
children, and reused while its service hands out the same handler; an async
unary-unary behaviour (every Explain) runs the scope written out in one
coroutine, other kinds through the `scope` context manager.

Only async behaviours (what grpc.aio servicers have) are wrapped; a sync
behaviour passes through unwrapped, since wrapping it in a coroutine would
hand it the async context it does not expect. (Decoding makes every behaviour
with a deserializer async first; with an authorizer the interceptor refuses a
behaviour it could not wrap.)
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
from explaind.server.security.decoding import HandlerCache, decoding_handler

# Codes that point at the server (logged as warnings); the rest are the caller's business.
SERVER_SIDE_CODES = frozenset({
    grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
})

CallScope = Callable[[aio.ServicerContext], AsyncContextManager]


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


def wrap_handler(handler: grpc.RpcMethodHandler, scope: CallScope) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behaviour runs inside `scope(context)`."""
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
            async with scope(context):
                async for response in behaviour(request, context):
                    yield response
    elif inspect.iscoroutinefunction(behaviour):
        @functools.wraps(behaviour)
        async def wrapped(request, context):
            async with scope(context):
                return await behaviour(request, context)
    else:
        return handler  # sync behaviour: see the module docstring

    if hasattr(handler, "_replace"):  # grpc's own handlers are namedtuples
        return handler._replace(**{kind: wrapped})
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(wrapped, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class _Method:
    """What the scope needs of one method, worked out once: its labels, whether it
    is exempt, and its metric children (a labels() lookup takes a lock each time)."""

    __slots__ = ("path", "labels", "exempt", "started", "seconds", "_handled", "_metrics")

    def __init__(self, path: str, grpc_type: str, metrics):
        service, method = split_method(path)
        self.path = path
        self.labels = (grpc_type, service, method)
        self.exempt = service in EXEMPT_SERVICES
        self._metrics = metrics
        self._handled: dict[str, object] = {}
        if metrics is not None:
            self.started = metrics.grpc_started.labels(*self.labels)
            self.seconds = metrics.grpc_handling_seconds.labels(*self.labels)

    def handled(self, code: str):
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self._metrics.grpc_handled.labels(*self.labels, code)
        return child


class AdmissionInterceptor(aio.ServerInterceptor):
    """Every call through `admission`, in one scope (see the module docstring).

    The request id always goes out in the trailers. With `send_initial_metadata`
    it also goes out in the response headers at the start of the call (so a
    handler must not send initial metadata itself); that costs one more write
    per call, about a quarter of a millisecond, so the server leaves it off.

    With `decode`, request bytes are parsed inside the scope as
    security/decoding.py's DecodeInterceptor would (the daemon's one interceptor:
    one wrapping per method instead of two per call). A method's wrapped handler
    is made once and kept while its service returns the same handler.
    """

    def __init__(self, admission: Admission, send_initial_metadata: bool = False, decode: bool = False):
        self.admission = admission
        self._send_initial = send_initial_metadata
        self._decode = decode
        self._wrapped = HandlerCache(self.wrap)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself (uncounted, as in go-grpc-prometheus)
            return None
        return self._wrapped.get(handler, handler_call_details.method)

    def wrap(self, handler: grpc.RpcMethodHandler, path: str) -> grpc.RpcMethodHandler:
        """`handler` (of method `path`) with every call through the scope."""
        inner = decoding_handler(handler) if self._decode and handler.request_deserializer is not None else handler
        method = _Method(path, grpc_type_of(handler), self.admission.metrics)
        if inner.unary_unary is not None and inspect.iscoroutinefunction(inner.unary_unary) \
                and hasattr(inner, "_replace"):
            wrapped = inner._replace(unary_unary=self._unary(inner.unary_unary, method))
        else:
            wrapped = wrap_handler(inner, lambda context: self.scope(method, context))
        if wrapped is inner and self.admission.authorizer is not None:
            # a sync behaviour the scope cannot wrap, so its caller cannot be checked: fail closed
            return refusing_handler(handler, "this method's handler is synchronous, so its caller cannot be "
                                             "checked; refused")
        return wrapped

    def _unary(self, behaviour, method: _Method):
        """The scope written out for an async unary-unary behaviour (the hot path:
        no context-manager generator per call)."""
        @functools.wraps(behaviour)
        async def wrapped(request, context):
            call = self._begin(method, context)
            exc: BaseException | None = None
            try:
                await self._admit(method, context, call)
                if method.exempt:
                    return await behaviour(request, context)
                try:
                    return await behaviour(request, context)
                finally:
                    self.admission.release()
            except BaseException as e:
                exc = e
                raise
            finally:
                self._end(method, context, call, exc)
        return wrapped

    @contextlib.asynccontextmanager
    async def scope(self, method: _Method, context: aio.ServicerContext):
        call = self._begin(method, context)
        exc: BaseException | None = None
        try:
            await self._admit(method, context, call)
            if method.exempt:
                yield
            else:
                try:
                    yield
                finally:
                    self.admission.release()
        except BaseException as e:
            exc = e
            raise
        finally:
            self._end(method, context, call, exc)

    # -- the scope's steps ------------------------------------------------------
    def _begin(self, method: _Method, context) -> "_Call":
        """The request id (log context, trailers) and the metrics' start: before
        anything can refuse the call, so refused calls are logged and counted too."""
        request_id = request_id_of(_metadata_value(context.invocation_metadata(), REQUEST_ID_KEY))
        peer = _peer(context)     # now: after a client cancels a stream, context.peer() crashes the process
        call = _Call(request_id, peer, request_id_var.set(request_id))
        if self.admission.metrics is not None:
            method.started.inc()
        return call

    async def _admit(self, method: _Method, context, call: "_Call") -> None:
        """Auth, drain, limit; an admitted (not exempt) call is in flight until its
        status has gone out: the shutdown closes the connections once idle, and must
        not cut a response."""
        context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id),))
        if self._send_initial:
            await context.send_initial_metadata(((REQUEST_ID_KEY, call.request_id),))
        admission = self.admission
        refusal = admission.admit(method.path, lambda: _credentials(context, admission.authorizer), method.exempt)
        if refusal is not None:
            await context.abort(refusal.code, refusal.message)
        if not method.exempt:
            context.add_done_callback(admission.done)

    def _end(self, method: _Method, context, call: "_Call", exc: BaseException | None) -> None:
        if exc is None and not context.done():
            _keep_request_id_trailer(context, call.request_id)
        code = status_of(context, exc)
        seconds = time.perf_counter() - call.start
        if self.admission.metrics is not None:
            method.seconds.observe(seconds)
            method.handled(code.name).inc()
        self.admission.log_call(method.path, code.name, code in SERVER_SIDE_CODES, seconds, call.request_id,
                                call.peer)
        try:
            request_id_var.reset(call.token)
        except ValueError:    # a cancelled stream's generator is closed from another context
            pass


class _Call:
    """One call's state between _begin and _end."""

    __slots__ = ("request_id", "peer", "token", "start")

    def __init__(self, request_id: str, peer: str, token):
        self.request_id, self.peer, self.token = request_id, peer, token
        self.start = time.perf_counter()


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
