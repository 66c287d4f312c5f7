"""Undecodable request bytes answer INVALID_ARGUMENT, not grpc's INTERNAL.

grpc parses a request before any interceptor's code runs and answers a
failure itself, with INTERNAL (a server fault, by its meaning). This
interceptor, the innermost, swaps each handler's deserializer for none, so
the behaviour receives the raw bytes, and parses them inside the call: a
failure is INVALID_ARGUMENT naming the message type, and the outer
interceptors (access log, metrics, auth) see it like any other call.

It also makes every behaviour async (a sync one runs on a worker thread, as
grpc.aio would run it): the outer interceptors wrap async behaviours only, so
a sync one would otherwise pass them unchecked.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import typing

import grpc
from grpc import aio

KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
# Methods whose decoding handler is kept; bounds what callers naming methods can grow.
MAX_CACHED_METHODS = 1024


class HandlerCache:
    """Each method's made handler, kept while its service hands out the same
    handler (an interceptor's per-call work is then one dict lookup)."""

    def __init__(self, make: typing.Callable[[grpc.RpcMethodHandler, str], grpc.RpcMethodHandler]):
        self._make = make
        self._made: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(self, handler: grpc.RpcMethodHandler, path: str) -> grpc.RpcMethodHandler:
        cached = self._made.get(path)
        if cached is not None and cached[0] is handler:
            return cached[1]
        made = self._make(handler, path)
        if len(self._made) >= MAX_CACHED_METHODS:
            self._made.clear()
        self._made[path] = (handler, made)
        return made


class DecodeInterceptor(aio.ServerInterceptor):
    """decoding_handler for every method (made once per method and handler)."""

    def __init__(self):
        self._decoding = HandlerCache(lambda handler, _path: decoding_handler(handler))

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return self._decoding.get(handler, handler_call_details.method)


def decoding_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    kind = next(k for k in KINDS if getattr(handler, k) is not None)
    behaviour = getattr(handler, kind)
    if not hasattr(handler, "_replace"):
        return handler
    parse = handler.request_deserializer
    type_name = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    type_name = type_name.full_name if type_name is not None else "request"
    streaming_request = kind.startswith("stream_")

    async def refuse(error: Exception, context):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request is not a valid {type_name} message: {_short(error)}")

    async def decode(raw, context):
        try:
            return parse(raw)
        except Exception as e:  # noqa: BLE001 - DecodeError, or anything a parser raises on hostile bytes
            await refuse(e, context)

    async def decoded_stream(raw_iterator, context):
        async for raw in raw_iterator:
            yield await decode(raw, context)

    async def request_of(raw, context):
        return decoded_stream(raw, context) if streaming_request else await decode(raw, context)

    if inspect.isasyncgenfunction(behaviour):
        @functools.wraps(behaviour)
        async def wrapped(raw, context):
            async for response in behaviour(await request_of(raw, context), context):
                yield response
    elif inspect.iscoroutinefunction(behaviour) and not streaming_request:
        @functools.wraps(behaviour)
        async def wrapped(raw, context):      # every Explain: parsed in line
            try:
                request = parse(raw)
            except Exception as e:  # noqa: BLE001 - as decode()
                await refuse(e, context)
            return await behaviour(request, context)
    elif inspect.iscoroutinefunction(behaviour):
        @functools.wraps(behaviour)
        async def wrapped(raw, context):
            return await behaviour(await request_of(raw, context), context)
    elif streaming_request:
        # A sync behaviour reads a sync iterator; rather than serve it unchecked (the
        # outer interceptors wrap async behaviours only), it is refused.
        @functools.wraps(behaviour)
        async def wrapped(raw, context):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this method has no asynchronous handler")
    elif handler.response_streaming:
        @functools.wraps(behaviour)
        async def wrapped(raw, context):      # a sync generator, stepped on a worker thread
            loop = asyncio.get_running_loop()
            responses = await loop.run_in_executor(None, behaviour, await decode(raw, context), context)
            while (response := await loop.run_in_executor(None, next, responses, _END)) is not _END:
                yield response
    else:
        @functools.wraps(behaviour)
        async def wrapped(raw, context):      # sync (grpc's unimplemented stubs): on a worker thread
            request = await decode(raw, context)
            try:
                return await asyncio.get_running_loop().run_in_executor(None, behaviour, request, context)
            except NotImplementedError:       # what the generated base servicer raises
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")

    return handler._replace(request_deserializer=None, **{kind: wrapped})


_END = object()


def _short(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "..."
