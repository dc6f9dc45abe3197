"""A ``grpc.aio`` channel to a service name that routes every call by OpenSergo rules.

The asyncio twin of :mod:`opensergo.integrations.grpc_client` (read it first): each call is
routed on its own (method ``POST``, path ``/package.Service/Method``, headers = the call
metadata), the lane is added to the call metadata, and the call runs on a sub-channel to the
chosen instance's gRPC address (one per address, created on first use, closed when the instance
leaves discovery). A unary call whose route carries a policy gets the rule's fault injection,
timeout and retries, as the sync channel's blocking calls do; other calls are routed only.

``grpc.aio`` has no ``intercept_channel``: client interceptors (the OpenSergo guard, OpenTelemetry's
client spans) are given to each sub-channel by ``channel_factory``, so they see every call after
routing, with the lane already in its metadata. A routing failure raises
:class:`~opensergo.integrations.grpc_client.RoutingRpcError` when the call is made.

``directory`` may be a callable returning the :class:`ServiceDirectory`, or None while
governance is not running: calls then go unrouted to ``target`` (what ``opensergo-run`` needs,
since an app may build its channels before governance starts). Methods for which ``skip`` is
true (the SDK's own calls) are never routed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

from opensergo.governance.routing.model import Instance, NoAvailableInstance, RoutingError
from opensergo.governance.routing.registry import Route, ServiceDirectory
from opensergo.governance.routing.resilience import CallPolicy
from opensergo.integrations import tracing
from opensergo.integrations.grpc_client import (
    TRANSPORT_CODES,
    FaultRpcError,
    GrpcCallView,
    Metadata,
    RoutingRpcError,
    call_kwargs,
)

__all__ = ["AioRoutingChannel"]

AioMetadata: TypeAlias = grpc.aio.Metadata | Sequence[tuple[str, str | bytes]] | None
AioChannelFactory: TypeAlias = Callable[[str], grpc.aio.Channel]
DirectorySource: TypeAlias = ServiceDirectory | Callable[[], ServiceDirectory | None]


class AioRoutingChannel(grpc.aio.Channel):
    """A ``grpc.aio`` channel to ``service`` whose calls are each routed to an instance."""

    def __init__(
        self,
        directory: DirectorySource,
        service: str,
        *,
        channel_factory: AioChannelFactory,
        target: str | None = None,
        propagate_lane: bool = True,
        protocol: str = "grpc",
        skip: Callable[[str], bool] | None = None,
    ) -> None:
        self._directory: Callable[[], ServiceDirectory | None] = (
            (lambda: directory) if isinstance(directory, ServiceDirectory) else directory
        )
        self.service = service
        self._target = target or service
        self._factory = channel_factory
        self._propagate = propagate_lane
        self._protocol = protocol
        self._skip = skip
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- routing -----------------------------------------------------------------------------------
    def routes_for(self, method: str) -> ServiceDirectory | None:
        """The directory routing ``method``; None: the call goes unrouted to the target."""
        if self._skip is not None and self._skip(method):
            return None
        return self._directory()

    def lane_metadata(
        self, routes: ServiceDirectory, metadata: Metadata | None
    ) -> tuple[Metadata | None, Any]:
        lanes = routes.lanes
        if self._propagate:
            outbound, lane = lanes.outbound_metadata(metadata)
            return tuple(outbound), lane
        return metadata, lanes.current()

    def route(
        self, routes: ServiceDirectory, method: str, metadata: Metadata | None, lane: Any
    ) -> tuple[Instance, Route, GrpcCallView]:
        view = GrpcCallView(method, metadata, self.service)
        try:
            route = routes.route(self.service, view, lane=lane)
        except RoutingError as error:
            raise RoutingRpcError(error) from error
        if route.instance is None:  # a redirect or direct response: an HTTP-only answer
            raise RoutingRpcError(
                NoAvailableInstance(self.service, "the matched rule answers without a call")
            )
        tracing.routed(route.instance, method)
        return route.instance, route, view

    def unrouted(self) -> grpc.aio.Channel:
        return self._sub(self._target)

    def channel_for(self, instance: Instance, routes: ServiceDirectory) -> grpc.aio.Channel:
        host, port = instance.address(self._protocol)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        channel = self._channels.get(target)
        if channel is None:
            channel = self._sub(target)
            self._prune(routes, keep=target)
        return channel

    def _sub(self, target: str) -> grpc.aio.Channel:
        if self._closed:
            raise grpc.aio.UsageError("the routing channel is closed")
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = self._factory(target)
        return channel

    def _prune(self, routes: ServiceDirectory, keep: str) -> None:
        """Close sub-channels of instances that left discovery (not the unrouted one)."""
        live = set()
        for instance in routes.instances(self.service):
            host, port = instance.address(self._protocol)
            live.add(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        for target in [t for t in self._channels if t not in live and t not in (keep, self._target)]:
            self._close_later(self._channels.pop(target))

    def _close_later(self, channel: grpc.aio.Channel) -> None:
        task = asyncio.get_running_loop().create_task(channel.close(None))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def channels(self) -> dict[str, grpc.aio.Channel]:
        """The open sub-channels by target."""
        return dict(self._channels)

    # -- grpc.aio.Channel --------------------------------------------------------------------------
    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.UnaryUnaryMultiCallable[Any, Any]:
        return _UnaryUnary(self, method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.UnaryStreamMultiCallable[Any, Any]:
        return _UnaryStream(self, method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.StreamUnaryMultiCallable[Any, Any]:
        return _StreamUnary(self, method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.aio.StreamStreamMultiCallable[Any, Any]:
        return _StreamStream(self, method, request_serializer, response_deserializer)

    def _probe(self) -> grpc.aio.Channel:
        """The sub-channel a plain request would use (connectivity questions go there)."""
        routes = self._directory()
        if routes is None:
            return self.unrouted()
        try:
            instance = routes.choose(self.service, GrpcCallView("/", None, self.service))
        except RoutingError as error:
            raise RoutingRpcError(error) from error
        return self.channel_for(instance, routes)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._probe().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._probe().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._probe().channel_ready()

    async def close(self, grace: float | None = None) -> None:
        self._closed = True
        channels, self._channels = list(self._channels.values()), {}
        await asyncio.gather(*(channel.close(grace) for channel in channels), *self._closing)

    async def __aenter__(self) -> AioRoutingChannel:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close(None)


if TYPE_CHECKING:  # the stubs make them generic; the runtime classes are not subscriptable
    _UnaryUnaryBase = grpc.aio.UnaryUnaryMultiCallable[Any, Any]
    _UnaryStreamBase = grpc.aio.UnaryStreamMultiCallable[Any, Any]
    _StreamUnaryBase = grpc.aio.StreamUnaryMultiCallable[Any, Any]
    _StreamStreamBase = grpc.aio.StreamStreamMultiCallable[Any, Any]
    _UnaryUnaryCallBase = grpc.aio.UnaryUnaryCall[Any, Any]
else:
    _UnaryUnaryBase = grpc.aio.UnaryUnaryMultiCallable
    _UnaryStreamBase = grpc.aio.UnaryStreamMultiCallable
    _StreamUnaryBase = grpc.aio.StreamUnaryMultiCallable
    _StreamStreamBase = grpc.aio.StreamStreamMultiCallable
    _UnaryUnaryCallBase = grpc.aio.UnaryUnaryCall


class _Callable:
    """Routes one call and starts it on the chosen instance's sub-channel, in flight until done."""

    kind = "unary_unary"

    def __init__(
        self,
        channel: AioRoutingChannel,
        method: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer

    def _start(self, first: Any, given: AioMetadata, kwargs: dict[str, Any]) -> Any:
        metadata: Metadata | None = tuple(given) if given is not None else None
        channel = self._channel
        routes = channel.routes_for(self._method)
        if routes is None:
            return self._multi(channel.unrouted())(first, metadata=metadata, **kwargs)
        routed, lane = channel.lane_metadata(routes, metadata)
        instance, route, view = channel.route(routes, self._method, routed, lane)
        if self.kind == "unary_unary" and not route.plain:
            return _PolicyCall(self, routes, route, view, first, routed, kwargs)
        return self.invoke(routes, instance, first, routed, kwargs)

    def _multi(self, channel: grpc.aio.Channel) -> Any:
        return getattr(channel, self.kind)(self._method, self._serializer, self._deserializer)

    def invoke(
        self,
        routes: ServiceDirectory,
        instance: Instance,
        first: Any,
        metadata: Metadata | None,
        kwargs: dict[str, Any],
    ) -> Any:
        target = self._multi(self._channel.channel_for(instance, routes))
        instance.acquire()
        try:
            call = target(first, metadata=metadata, **kwargs)
        except BaseException:
            instance.release()
            raise
        call.add_done_callback(lambda _: instance.release())
        return call


class _UnaryUnary(_Callable, _UnaryUnaryBase):
    kind = "unary_unary"

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: AioMetadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._start(request, metadata, call_kwargs(timeout, credentials, wait_for_ready, compression))


class _UnaryStream(_Callable, _UnaryStreamBase):
    kind = "unary_stream"

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: AioMetadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._start(request, metadata, call_kwargs(timeout, credentials, wait_for_ready, compression))


class _StreamUnary(_Callable, _StreamUnaryBase):
    kind = "stream_unary"

    def __call__(
        self,
        request_iterator: AsyncIterator[Any] | Iterator[Any] | None = None,
        timeout: float | None = None,
        metadata: AioMetadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        return self._start(request_iterator, metadata, kwargs)


class _StreamStream(_Callable, _StreamStreamBase):
    kind = "stream_stream"

    def __call__(
        self,
        request_iterator: AsyncIterator[Any] | Iterator[Any] | None = None,
        timeout: float | None = None,
        metadata: AioMetadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        return self._start(request_iterator, metadata, kwargs)


class _PolicyCall(_UnaryUnaryCallBase):
    """A unary call under its rule's fault injection, timeout and retries: a task running the
    tries one after another; the call's status and metadata are those of the last try."""

    def __init__(
        self,
        callable_: _Callable,
        routes: ServiceDirectory,
        route: Route,
        view: GrpcCallView,
        request: Any,
        metadata: Metadata | None,
        kwargs: dict[str, Any],
    ) -> None:
        self._last: Any = None
        self._fault: FaultRpcError | None = None
        self._task = asyncio.get_running_loop().create_task(
            self._run(callable_, routes, route, view, request, metadata, dict(kwargs))
        )

    async def _run(
        self,
        callable_: _Callable,
        routes: ServiceDirectory,
        route: Route,
        view: GrpcCallView,
        request: Any,
        metadata: Metadata | None,
        kwargs: dict[str, Any],
    ) -> Any:
        policy = CallPolicy(route.policy)
        delay, abort = policy.fault()
        if delay:
            await asyncio.sleep(delay)
        if abort is not None:
            self._fault = FaultRpcError(abort)
            raise self._fault
        instance = route.instance
        assert instance is not None
        user_timeout = kwargs.get("timeout")
        while True:
            budget = policy.try_timeout()
            if budget is not None:
                kwargs["timeout"] = budget if user_timeout is None else min(user_timeout, budget)
            self._last = callable_.invoke(routes, instance, request, metadata, kwargs)
            try:
                response = await self._last
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
                route.report(instance, failed=code in TRANSPORT_CODES)
                backoff = policy.retry_after_grpc(code.name)
                if backoff is None:
                    raise
            else:
                route.report(instance, status=200)
                return response
            if backoff:
                await asyncio.sleep(backoff)
            try:
                instance = route.retry_instance(view)
            except RoutingError as error:
                raise RoutingRpcError(error) from error

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()

    async def _settled(self) -> None:
        await asyncio.wait({self._task})

    def cancelled(self) -> bool:
        return self._task.cancelled()

    def done(self) -> bool:
        return self._task.done()

    def time_remaining(self) -> float | None:
        return self._last.time_remaining() if self._last is not None else None

    def cancel(self) -> bool:
        if self._last is not None:
            self._last.cancel()
        return self._task.cancel()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._task.add_done_callback(lambda _: callback(self))

    async def initial_metadata(self) -> Any:
        await self._settled()
        return await self._last.initial_metadata() if self._last is not None else grpc.aio.Metadata()

    async def trailing_metadata(self) -> Any:
        await self._settled()
        return await self._last.trailing_metadata() if self._last is not None else grpc.aio.Metadata()

    async def code(self) -> grpc.StatusCode:
        await self._settled()
        if self._task.cancelled():
            return grpc.StatusCode.CANCELLED
        if self._fault is not None:
            return self._fault.code()
        if self._last is None:  # no instance to retry on
            return grpc.StatusCode.UNAVAILABLE
        code: grpc.StatusCode = await self._last.code()
        return code

    async def details(self) -> str:
        await self._settled()
        if self._fault is not None:
            return self._fault.details()
        return str(await self._last.details()) if self._last is not None else ""

    async def wait_for_connection(self) -> None:
        await self._settled()
