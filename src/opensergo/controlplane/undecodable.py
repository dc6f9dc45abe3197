"""Requests that are not valid protobuf get INVALID_ARGUMENT, on every gRPC service.

gRPC's own handling of a message that does not decode depends on the call shape: a unary call
answers UNKNOWN, a streaming call raises ``DecodeError`` into the servicer (the token service
then fails with UNKNOWN and a logged traceback; SubscribeConfig ended with OK and no answer).
Every handler is wrapped (:func:`refuse_undecodable`, at registration: see handlers.py) so that
the answer is the same everywhere: the deserializer returns a marker instead of raising, and the
call ends with INVALID_ARGUMENT naming the message type, before the servicer sees the request
(for a stream: its requests end at that message, as if the client had half-closed, and the
servicer's own end of the call carries the status).

A handler marked with :func:`checks_undecodable` checks its requests itself (a stream handler
with :func:`refused`, ending its requests there; a unary one with :func:`undecodable_reason`):
the wrapper then only swaps its deserializer and adds no coroutine nor iterator of its own to each
call: a few hundred bytes per open stream (SubscribeConfig), a few microseconds per call
(ReportMetadata, called for every heartbeat).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

_CHECKS_ITSELF = "_opensergo_checks_undecodable"
F = TypeVar("F", bound=Callable[..., Any])


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


def checks_undecodable(behavior: F) -> F:
    """Marks a handler that checks its requests: a stream handler calls :func:`refused` on each
    request and ends its requests at the first refused one; a unary one ends its call with
    INVALID_ARGUMENT when :func:`undecodable_reason` gives a reason."""
    setattr(behavior, _CHECKS_ITSELF, True)
    return behavior


def undecodable_reason(request: Any) -> str | None:
    """Why ``request`` did not decode; None when it did."""
    return request.reason if isinstance(request, _Undecodable) else None


def refused(request: Any, context: Any) -> bool:
    """True when ``request`` did not decode: the call then ends with INVALID_ARGUMENT, and the
    stream's requests must end here.

    Not abort(): the servicer may be writing on the stream right now, and gRPC refuses a second
    operation at once. The code and details are set; the servicer finishes as on a half-close
    and its end of the call carries them.
    """
    if not isinstance(request, _Undecodable):
        return False
    context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
    context.set_details(request.reason)
    return True


class _Checked:
    """The requests of a stream up to the first one that did not decode (for handlers that do
    not check themselves). A plain async iterator: between requests it keeps neither a frame
    nor the last request, as an async generator did."""

    __slots__ = ("_context", "_requests")

    def __init__(self, requests: AsyncIterator[Any], context: Any) -> None:
        self._requests: AsyncIterator[Any] | None = aiter(requests)
        self._context = context

    def __aiter__(self) -> _Checked:
        return self

    async def __anext__(self) -> Any:
        if self._requests is None:
            raise StopAsyncIteration
        request = await anext(self._requests)
        if refused(request, self._context):
            self._requests = None  # the requests end here
            raise StopAsyncIteration
        return request


def _unary(behavior: Callable[..., Any]) -> Callable[[Any, Any], Awaitable[Any]]:
    if getattr(behavior, _CHECKS_ITSELF, False):
        return behavior

    async def call(request: Any, context: Any) -> Any:
        if isinstance(request, _Undecodable):
            await _refuse(context, request)
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result

    return call


def _streaming(behavior: Callable[..., Any]) -> Callable[[Any, Any], Any]:
    if getattr(behavior, _CHECKS_ITSELF, False):
        return behavior
    # The server picks how to run a handler by its function type: keep that type.
    if inspect.isasyncgenfunction(behavior):

        async def generate(requests: Any, context: Any) -> AsyncIterator[Any]:
            async for response in behavior(_Checked(requests, context), context):
                yield response

        return generate

    async def call(requests: Any, context: Any) -> Any:
        result = behavior(_Checked(requests, context), context)
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
