"""Requests that are not valid protobuf get INVALID_ARGUMENT, on every gRPC service.

gRPC's own handling of a message that does not decode depends on the call shape: a unary call
answers UNKNOWN, a streaming call raises ``DecodeError`` into the servicer (the token service
then fails with UNKNOWN and a logged traceback; SubscribeConfig ended with OK and no answer).
Every handler is wrapped (:func:`refuse_undecodable`, at registration: see handlers.py) so that
the answer is the same everywhere: the deserializer returns a marker instead of raising, and the
call ends with INVALID_ARGUMENT naming the message type, before the servicer
sees the request (for a stream: its requests end at that message, as if the client had
half-closed, and the servicer's own end of the call carries the status).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc


class _Undecodable:
    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as err:  # DecodeError, or whatever else a parser raises on bad bytes
            return _Undecodable(f"the request is not a valid protobuf message: {err}")

    return parse


async def _refuse(context: Any, request: _Undecodable) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)


async def _checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, _Undecodable):
            # Not abort(): the servicer may be writing on the stream right now, and gRPC refuses
            # a second operation at once. The requests end here (the servicer sees a half-close
            # and finishes as usual) and the call ends with this status.
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details(request.reason)
            return
        yield request


def _unary(behavior: Callable[..., Any]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def call(request: Any, context: Any) -> Any:
        if isinstance(request, _Undecodable):
            await _refuse(context, request)
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result

    return call


def _streaming(behavior: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    # The server picks how to run a handler by its function type: keep that type.
    if inspect.isasyncgenfunction(behavior):

        async def generate(requests: Any, context: Any) -> AsyncIterator[Any]:
            async for response in behavior(_checked(requests, context), context):
                yield response

        return generate

    async def call(requests: Any, context: Any) -> Any:
        result = behavior(_checked(requests, context), context)
        return await result if inspect.isawaitable(result) else result

    return call


def refuse_undecodable(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with a lenient deserializer, and INVALID_ARGUMENT for what does not decode."""
    deserialize = handler.request_deserializer
    if deserialize is None:
        return handler
    parse = _lenient(deserialize)
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary), request_deserializer=parse, response_serializer=serialize
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _streaming(handler.stream_unary), request_deserializer=parse, response_serializer=serialize
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _streaming(handler.stream_stream), request_deserializer=parse, response_serializer=serialize
        )
    return handler  # unary-stream: no service of ours has one
