"""gRPC server interceptors (sync ``grpc`` and ``grpc.aio``) that guard every inbound call.

::

    from opensergo.integrations.grpc_server import AioServerInterceptor, ServerInterceptor

    server = grpc.server(executor, interceptors=[ServerInterceptor()])
    server = grpc.aio.server(interceptors=[AioServerInterceptor()])

Each call is one entry of resource ``/package.Service/Method`` (the full method name;
``resource=`` maps it to another name).

* Blocked: the call ends with ``RESOURCE_EXHAUSTED`` (``blocked_code``) and the details
  ``Blocked by OpenSergo: <why>``; ``block_handler(error) -> (code, details) | None`` may choose
  per block. HttpRequestFallbackActions are HTTP responses and do not apply to gRPC. The engine
  logs each block at DEBUG (logger ``opensergo.governance``) and counts it.
* Errors for circuit breakers: an exception raised by the handler, and a non-OK status set with
  ``context.abort`` / ``context.set_code`` -- every non-OK code by default, or only those in
  ``error_codes``. A status is reported as :class:`~opensergo.governance.blocking.ErrorStatus`.
* The entry ends when the call ends: for server-streaming calls, when the response iterator is
  exhausted, fails or is closed.
* ``grpc.aio``: the entry is taken with :meth:`Engine.aentry`, so throttling waits without
  blocking the loop; async-generator, coroutine (``context.write``) and sync handlers are all
  wrapped in their own kind.
* Lanes: the traffic lane is entered from the call metadata for the handler's duration.
* Hot-parameter limits (HotParamRateLimitStrategy) read a metadata key (``grpcMetadata``) or the
  peer address (``clientIP``) through :func:`context_param`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from opensergo.governance.api import default_engine
from opensergo.governance.blocking import ErrorStatus
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance.engine import Engine, Entry
from opensergo.governance.routing import lanes as _lanes
from opensergo.governance.routing.lanes import LaneMark, LaneToken
from opensergo.integrations import tracing
from opensergo.integrations.params import peer_host
from opensergo.spec.faulttolerance import ParamSource

__all__ = ["AioServerInterceptor", "BlockStatus", "ServerInterceptor", "context_param"]

BlockStatus = Callable[[BlockedError], "tuple[grpc.StatusCode, str] | None"]

_OK = grpc.StatusCode.OK

if TYPE_CHECKING:  # the stubs make these generic; the runtime classes are not subscriptable
    _SyncBase = grpc.ServerInterceptor[Any, Any]
    _AioBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _SyncBase = grpc.ServerInterceptor
    _AioBase = grpc.aio.ServerInterceptor


class _Options:
    """What the sync and aio interceptors share."""

    def __init__(
        self,
        engine: Engine | None,
        resource: Callable[[str], str] | None,
        blocked_code: grpc.StatusCode,
        block_handler: BlockStatus | None,
        error_codes: Collection[grpc.StatusCode] | None,
        lanes: bool,
    ) -> None:
        self.engine = engine if engine is not None else default_engine()
        self.resource = resource
        self.blocked_code = blocked_code
        self.block_handler = block_handler
        self.error_codes = frozenset(error_codes) if error_codes is not None else None
        self.lanes = lanes

    def name(self, method: str) -> str:
        return self.resource(method) if self.resource is not None else method

    def block_status(self, blocked: BlockedError) -> tuple[grpc.StatusCode, str]:
        if self.block_handler is not None:
            chosen = self.block_handler(blocked)
            if chosen is not None:
                return chosen
        return self.blocked_code, f"Blocked by OpenSergo: {blocked}"

    def enter_lane(self, details: grpc.HandlerCallDetails) -> LaneToken | None:
        if not self.lanes:
            return None
        metadata: Any = details.invocation_metadata or ()
        method: str = details.method
        return _lanes.enter_from_headers(metadata, method="POST", path=method)

    def lane_of(self, details: grpc.HandlerCallDetails) -> LaneMark | None:
        """The lane of a call (colouring as on entry), without staying in it."""
        token = self.enter_lane(details)
        if token is None:
            return None
        try:
            return _lanes.current()
        finally:
            _lanes.reset(token)

    def enter(self, mark: LaneMark | None) -> LaneToken | None:
        return _lanes.enter(mark) if self.lanes else None

    def _code_error(self, code: Any, resource: str) -> ErrorStatus | None:
        if code is None or code == _OK or code == 0:
            return None
        if self.error_codes is not None and code not in self.error_codes:
            return None
        return ErrorStatus(code, resource)

    def status_error(self, context: Any, resource: str) -> BaseException | None:
        """The error to report for a call that returned normally (its status code)."""
        return self._code_error(_code(context), resource)

    def exception_error(self, exc: BaseException, context: Any, resource: str) -> BaseException | None:
        """The error to report for a handler that raised (an abort: judged by its status)."""
        code = _code(context)
        if code is not None and code != _OK and code != 0:
            return self._code_error(code, resource)
        return exc


def context_param(context: Any, source: ParamSource, name: str | None) -> str | None:
    """A call parameter for hot-parameter limits: the first value of a metadata key, or the
    peer's address (see :mod:`opensergo.integrations.params`)."""
    if source is ParamSource.GRPC_METADATA and name:
        key = name.lower()
        for item in context.invocation_metadata() or ():
            if item.key == key:
                value = item.value
                return value if isinstance(value, str) else None
        return None
    if source is ParamSource.CLIENT_IP:
        peer = context.peer()
        return peer_host(peer) if isinstance(peer, str) else None
    return None


def _code(context: Any) -> Any:
    try:
        return context.code()
    except Exception:  # pragma: no cover - very old grpcio
        return None


def _reset(token: LaneToken | None) -> None:
    if token is not None:
        with contextlib.suppress(ValueError, RuntimeError):  # a generator closed in another context
            _lanes.reset(token)


def _rebuild(handler: grpc.RpcMethodHandler[Any, Any], **behaviors: Any) -> grpc.RpcMethodHandler[Any, Any]:
    ser = handler.response_serializer
    de = handler.request_deserializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(behaviors["stream_stream"], de, ser)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behaviors["stream_unary"], de, ser)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(behaviors["unary_stream"], de, ser)
    return grpc.unary_unary_rpc_method_handler(behaviors["unary_unary"], de, ser)


def _behavior(handler: grpc.RpcMethodHandler[Any, Any]) -> tuple[str, Callable[..., Any]]:
    fn: Callable[..., Any] | None
    if handler.request_streaming and handler.response_streaming:
        kind, fn = "stream_stream", handler.stream_stream
    elif handler.request_streaming:
        kind, fn = "stream_unary", handler.stream_unary
    elif handler.response_streaming:
        kind, fn = "unary_stream", handler.unary_stream
    else:
        kind, fn = "unary_unary", handler.unary_unary
    if fn is None:
        raise ValueError(f"the handler has no {kind} behavior")
    return kind, fn


# -- sync wrappers (grpc.server, and sync handlers on a grpc.aio server) --------------------------


def _sync_unary(
    opts: _Options, fn: Callable[[Any, Any], Any], resource: str, details: grpc.HandlerCallDetails
) -> Callable[[Any, Any], Any]:
    def behavior(request: Any, context: Any) -> Any:
        token = opts.enter_lane(details)
        try:
            tracing.inbound(resource)
            try:
                entry = opts.engine.entry(resource, params=partial(context_param, context))
            except BlockedError as blocked:
                tracing.blocked(blocked)
                context.abort(*opts.block_status(blocked))
                raise  # pragma: no cover - abort raises
            try:
                response = fn(request, context)
            except BaseException as exc:
                entry.exit(opts.exception_error(exc, context, resource))
                raise
            entry.exit(opts.status_error(context, resource))
            return response
        finally:
            _reset(token)

    return behavior


def _sync_stream(
    opts: _Options, fn: Callable[[Any, Any], Iterator[Any]], resource: str, details: grpc.HandlerCallDetails
) -> Callable[[Any, Any], Iterator[Any]]:
    def behavior(request: Any, context: Any) -> Iterator[Any]:
        mark = opts.lane_of(details)
        token = opts.enter(mark)
        try:
            tracing.inbound(resource)
            try:
                entry = opts.engine.entry(resource, params=partial(context_param, context))
            except BlockedError as blocked:
                tracing.blocked(blocked)
                context.abort(*opts.block_status(blocked))
                raise  # pragma: no cover - abort raises
            try:
                responses = fn(request, context)
            except BaseException as exc:
                entry.exit(opts.exception_error(exc, context, resource))
                raise
        finally:
            _reset(token)
        return _sync_responses(opts, responses, entry, context, resource, mark)

    return behavior


def _sync_responses(
    opts: _Options, responses: Any, entry: Entry, context: Any, resource: str, mark: LaneMark | None
) -> Iterator[Any]:
    # The lane is entered around each step of the handler's iterator (never across a yield),
    # so it is reset in the context that set it, whoever drives or closes this generator.
    it = iter(responses) if responses is not None else iter(())
    try:
        while True:
            token = opts.enter(mark)
            try:
                item = next(it)
            except StopIteration:
                break
            finally:
                _reset(token)
            yield item
    except BaseException as exc:
        entry.exit(opts.exception_error(exc, context, resource))
        raise
    else:
        entry.exit(opts.status_error(context, resource))
    finally:
        entry.exit(None)  # closed early: the call ended
        close = getattr(it, "close", None)
        if close is not None:
            close()


class ServerInterceptor(_SyncBase):
    """Guards every call of a sync ``grpc.server``; see the module documentation."""

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        resource: Callable[[str], str] | None = None,
        blocked_code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED,
        block_handler: BlockStatus | None = None,
        error_codes: Collection[grpc.StatusCode] | None = None,
        lanes: bool = True,
    ) -> None:
        self._opts = _Options(engine, resource, blocked_code, block_handler, error_codes, lanes)

    @property
    def engine(self) -> Engine:
        return self._opts.engine

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return tracing.grpc_server(
            _wrap_sync(self._opts, handler, handler_call_details), handler_call_details
        )


def _wrap_sync(
    opts: _Options, handler: grpc.RpcMethodHandler[Any, Any], details: grpc.HandlerCallDetails
) -> grpc.RpcMethodHandler[Any, Any]:
    resource = opts.name(details.method)
    kind, fn = _behavior(handler)
    if handler.response_streaming:
        wrapped = _sync_stream(opts, fn, resource, details)
    else:
        wrapped = _sync_unary(opts, fn, resource, details)
    return _rebuild(handler, **{kind: wrapped})


# -- grpc.aio ----------------------------------------------------------------------------------


def _aio_coroutine(
    opts: _Options, fn: Callable[[Any, Any], Awaitable[Any]], resource: str, details: grpc.HandlerCallDetails
) -> Callable[[Any, Any], Awaitable[Any]]:
    async def behavior(request: Any, context: Any) -> Any:
        token = opts.enter_lane(details)
        try:
            tracing.inbound(resource)
            try:
                entry = await opts.engine.aentry(resource, params=partial(context_param, context))
            except BlockedError as blocked:
                tracing.blocked(blocked)
                await context.abort(*opts.block_status(blocked))
                raise  # pragma: no cover - abort raises
            try:
                response = await fn(request, context)
            except BaseException as exc:
                entry.exit(opts.exception_error(exc, context, resource))
                raise
            entry.exit(opts.status_error(context, resource))
            return response
        finally:
            _reset(token)

    return behavior


def _aio_generator(
    opts: _Options,
    fn: Callable[[Any, Any], AsyncIterator[Any]],
    resource: str,
    details: grpc.HandlerCallDetails,
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
        mark = opts.lane_of(details)
        token = opts.enter(mark)
        try:
            tracing.inbound(resource)
            try:
                entry = await opts.engine.aentry(resource, params=partial(context_param, context))
            except BlockedError as blocked:
                tracing.blocked(blocked)
                await context.abort(*opts.block_status(blocked))
                raise  # pragma: no cover - abort raises
        finally:
            _reset(token)
        responses = fn(request, context)
        try:
            while True:  # the lane around each step, never across a yield (see _sync_responses)
                token = opts.enter(mark)
                try:
                    item = await responses.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    _reset(token)
                yield item
        except BaseException as exc:
            entry.exit(opts.exception_error(exc, context, resource))
            raise
        else:
            entry.exit(opts.status_error(context, resource))
        finally:
            entry.exit(None)
            aclose = getattr(responses, "aclose", None)
            if aclose is not None:
                await aclose()

    return behavior


class AioServerInterceptor(_AioBase):
    """Guards every call of a ``grpc.aio.server``; see the module documentation."""

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        resource: Callable[[str], str] | None = None,
        blocked_code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED,
        block_handler: BlockStatus | None = None,
        error_codes: Collection[grpc.StatusCode] | None = None,
        lanes: bool = True,
    ) -> None:
        self._opts = _Options(engine, resource, blocked_code, block_handler, error_codes, lanes)

    @property
    def engine(self) -> Engine:
        return self._opts.engine

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        opts = self._opts
        kind, fn = _behavior(handler)
        resource = opts.name(handler_call_details.method)
        if inspect.isasyncgenfunction(fn):
            wrapped: Callable[..., Any] = _aio_generator(opts, fn, resource, handler_call_details)
        elif inspect.iscoroutinefunction(fn):
            wrapped = _aio_coroutine(opts, fn, resource, handler_call_details)
        else:  # a sync handler: the aio server runs it in its executor
            return tracing.grpc_server(_wrap_sync(opts, handler, handler_call_details), handler_call_details)
        return await tracing.grpc_aio_server(_rebuild(handler, **{kind: wrapped}), handler_call_details)
