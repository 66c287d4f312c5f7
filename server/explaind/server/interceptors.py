"""grpc.aio server interceptors: access log, metrics, drain, concurrency limit.

Each interceptor wraps the method handler's behaviour in a *call scope* (an
async context manager around the handler), so it sees how the call ended:
normally, through context.abort(...), by an exception, or cancelled. A scope
may refuse a call by aborting before the handler runs; scopes further out
then see that refusal like any other failed call.

Order (first = outermost), as `build_interceptors` returns it:
RequestIdInterceptor, MetricsInterceptor, AuthInterceptor, DrainInterceptor,
LimitsInterceptor, DecodeInterceptor (Auth and Decode live in security/).
Calls refused by auth, drain or limits are then still logged and counted;
unauthenticated calls never count as in flight; request bytes are parsed
last, inside every check.

Only async behaviours (what grpc.aio servicers have) are wrapped; a sync
behaviour passes through unwrapped, since wrapping it in a coroutine would
hand it the async context it does not expect. (In the daemon DecodeInterceptor,
innermost, has already made every behaviour async; AuthInterceptor refuses
one it could not wrap.)
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
import uuid
from typing import AsyncContextManager, Callable, Iterable

import grpc
from grpc import aio

from explaind.server.logging_setup import request_id_var
from explaind.server.metrics import Metrics, split_method

access_log = logging.getLogger("explaind.access")

REQUEST_ID_KEY = "x-request-id"
# Health checks and reflection must keep answering under load and while
# draining (a NOT_SERVING health answer is how a load balancer learns to stop).
EXEMPT_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})

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


class _ScopeInterceptor(aio.ServerInterceptor):
    """Base: wraps every resolved handler in `self.scope`."""

    def scope(self, details: grpc.HandlerCallDetails, context: aio.ServicerContext) -> AsyncContextManager:
        raise NotImplementedError

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself
            return None
        return wrap_handler(handler, handler_call_details, self.scope)


def _service_of(details: grpc.HandlerCallDetails) -> str:
    return split_method(details.method)[0]


# -- metrics ------------------------------------------------------------------

class MetricsInterceptor(_ScopeInterceptor):
    """grpc_server_started_total / handled_total / handling_seconds per call."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics
        self._types: dict[str, str] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        self._types[handler_call_details.method] = grpc_type_of(handler)
        return wrap_handler(handler, handler_call_details, self.scope)

    @contextlib.asynccontextmanager
    async def scope(self, details, context):
        service, method = split_method(details.method)
        labels = (self._types.get(details.method, "unary"), service, method)
        m = self._metrics
        m.grpc_started.labels(*labels).inc()
        start = time.perf_counter()
        exc: BaseException | None = None
        try:
            yield
        except BaseException as e:
            exc = e
            raise
        finally:
            m.grpc_handling_seconds.labels(*labels).observe(time.perf_counter() - start)
            m.grpc_handled.labels(*labels, status_of(context, exc).name).inc()


# -- drain --------------------------------------------------------------------

class DrainInterceptor(_ScopeInterceptor):
    """The drain switch: counts calls in flight and, once draining, refuses new
    ones with UNAVAILABLE while those in flight finish.

    Health and reflection are neither counted nor refused.
    """

    def __init__(self, metrics: Metrics | None = None, exempt_services: Iterable[str] = EXEMPT_SERVICES):
        self._metrics = metrics
        self._exempt = frozenset(exempt_services)
        self._inflight = 0
        self._draining = False
        self._idle: asyncio.Event | None = None  # created on the loop, lazily

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def draining(self) -> bool:
        return self._draining

    def start_draining(self) -> None:
        self._draining = True

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no call is in flight; False if `timeout` seconds passed first."""
        if self._inflight == 0:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return self._inflight == 0

    @contextlib.asynccontextmanager
    async def scope(self, details, context):
        if _service_of(details) in self._exempt:
            yield
            return
        if self._draining:
            if self._metrics is not None:
                self._metrics.rejected_calls.labels(reason="draining").inc()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; retry on another replica")
        self._inflight += 1
        if self._metrics is not None:
            self._metrics.inflight_calls.inc()
        # A call ends when its status has gone out, after the handler returns: the
        # shutdown closes the connections once idle, and must not cut a response.
        context.add_done_callback(self._call_done)
        yield

    def _call_done(self, _context) -> None:
        self._inflight -= 1
        if self._metrics is not None:
            self._metrics.inflight_calls.dec()
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()


# -- concurrency limit --------------------------------------------------------

class LimitsInterceptor(_ScopeInterceptor):
    """More than `max_concurrent_calls` calls at once -> RESOURCE_EXHAUSTED at once,
    rather than queueing without bound. Health and reflection are exempt."""

    def __init__(self, max_concurrent_calls: int, metrics: Metrics | None = None,
                 exempt_services: Iterable[str] = EXEMPT_SERVICES):
        if max_concurrent_calls < 1:
            raise ValueError(f"max_concurrent_calls must be >= 1, got {max_concurrent_calls}")
        self.max_concurrent_calls = max_concurrent_calls
        self._metrics = metrics
        self._exempt = frozenset(exempt_services)
        self._active = 0

    @property
    def active(self) -> int:
        return self._active

    @contextlib.asynccontextmanager
    async def scope(self, details, context):
        if _service_of(details) in self._exempt:
            yield
            return
        if self._active >= self.max_concurrent_calls:
            if self._metrics is not None:
                self._metrics.rejected_calls.labels(reason="concurrency_limit").inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"server is at its limit of {self.max_concurrent_calls} concurrent calls; retry with "
                "backoff, or raise the limit (max_concurrent_calls) or add replicas")
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1


# -- request id and access log ------------------------------------------------

class RequestIdInterceptor(_ScopeInterceptor):
    """Takes x-request-id from the call's metadata or makes one, returns it in
    the initial and trailing metadata, exposes it to logs (request_id_var) and
    logs one line per call to the "explaind.access" logger.

    The id always goes out in the trailers. With `send_initial_metadata` it also
    goes out in the response headers at the start of the call (so a handler must
    not send initial metadata itself); that costs one more write per call, about
    a quarter of a millisecond, so the server leaves it off.
    """

    def __init__(self, send_initial_metadata: bool = False, logger: logging.Logger = access_log):
        self._send_initial = send_initial_metadata
        self._log = logger

    @staticmethod
    def request_id_of(metadata) -> str:
        for key, value in metadata or ():
            if key.lower() == REQUEST_ID_KEY and value:
                value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                return value[:128]  # the client chose it; keep log lines bounded
        return uuid.uuid4().hex

    @contextlib.asynccontextmanager
    async def scope(self, details, context):
        request_id = self.request_id_of(context.invocation_metadata())
        peer = _peer(context)     # now: after a client cancels a stream, context.peer() crashes the process
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        exc: BaseException | None = None
        try:
            context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
            if self._send_initial:
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
            yield
        except BaseException as e:
            exc = e
            raise
        finally:
            if exc is None and not context.done():
                _keep_request_id_trailer(context, request_id)
            code = status_of(context, exc)
            self._log.log(
                logging.WARNING if code in SERVER_SIDE_CODES else logging.INFO,
                "%s %s", details.method, code.name,
                extra={
                    "method": details.method,
                    "code": code.name,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                    "request_id": request_id,
                    "peer": peer,
                })
            try:
                request_id_var.reset(token)
            except ValueError:    # a cancelled stream's generator is closed from another context
                pass


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


def build_interceptors(metrics: Metrics, drain: DrainInterceptor | None = None,
                       max_concurrent_calls: int | None = None,
                       request_ids: bool = True, auth: Iterable[aio.ServerInterceptor] = (),
                       innermost: Iterable[aio.ServerInterceptor] = ()) -> list[aio.ServerInterceptor]:
    """The interceptors in their intended order, for grpc.aio.server(interceptors=...)."""
    chain: list[aio.ServerInterceptor] = []
    if request_ids:
        chain.append(RequestIdInterceptor())
    chain.append(MetricsInterceptor(metrics))
    chain.extend(auth)
    if drain is not None:
        chain.append(drain)
    if max_concurrent_calls:
        chain.append(LimitsInterceptor(max_concurrent_calls, metrics))
    chain.extend(innermost)
    return chain
