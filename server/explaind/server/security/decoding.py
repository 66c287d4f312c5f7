"""Undecodable request bytes answer INVALID_ARGUMENT, not grpc's INTERNAL.

grpc parses a request before any interceptor's code runs and answers a
failure itself, with INTERNAL (a server fault, by its meaning). This
interceptor, the innermost, swaps each handler's deserializer for none, so
the behaviour receives the raw bytes, and parses them inside the call: a
failure is INVALID_ARGUMENT naming the message type, and the outer
interceptors (access log, metrics, auth) see it like any other call.
"""
from __future__ import annotations

import functools
import inspect

import grpc
from grpc import aio

KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class DecodeInterceptor(aio.ServerInterceptor):
    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return decoding_handler(handler)


def decoding_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    kind = next(k for k in KINDS if getattr(handler, k) is not None)
    behaviour = getattr(handler, kind)
    if not hasattr(handler, "_replace") or not (
            inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)):
        return handler            # sync behaviours (none here) keep grpc's own parsing
    parse = handler.request_deserializer
    type_name = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
    type_name = type_name.full_name if type_name is not None else "request"

    async def decode(raw, context):
        try:
            return parse(raw)
        except Exception as e:  # noqa: BLE001 - DecodeError, or anything a parser raises on hostile bytes
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"the request is not a valid {type_name} message: {_short(e)}")

    async def decoded_stream(raw_iterator, context):
        async for raw in raw_iterator:
            yield await decode(raw, context)

    streaming_request = kind.startswith("stream_")

    async def request_of(raw, context):
        return decoded_stream(raw, context) if streaming_request else await decode(raw, context)

    if inspect.isasyncgenfunction(behaviour):
        @functools.wraps(behaviour)
        async def wrapped(raw, context):
            async for response in behaviour(await request_of(raw, context), context):
                yield response
    else:
        @functools.wraps(behaviour)
        async def wrapped(raw, context):
            return await behaviour(await request_of(raw, context), context)

    return handler._replace(request_deserializer=None, **{kind: wrapped})


def _short(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "..."
