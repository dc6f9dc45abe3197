"""A gRPC channel to a service name that routes every call by OpenSergo rules.

>>> channel = routing_channel(directory, "service-provider")  # doctest: +SKIP
>>> stub = helloworld_pb2_grpc.GreeterStub(channel)  # doctest: +SKIP
>>> stub.SayHello(request, metadata=[("tag", "v2")])  # doctest: +SKIP

Why not a name resolver: grpcio for Python exposes no API to register a custom resolver or load
balancing policy (the C-core registries are private), and a resolver could only hand gRPC a list
of addresses anyway, not route per request by metadata. :class:`RoutingChannel` is instead a
:class:`grpc.Channel` that makes a routing decision per call: the request view is the call
(method ``POST``, path ``/package.Service/Method``, headers = the call metadata), the chosen
instance's gRPC address gets one ordinary sub-channel (created on first use and kept while the
instance exists, closed when it disappears from discovery), and the call runs on it. Every
TrafficRouter feature, lanes and the least-request counters therefore work for gRPC as for HTTP.
The lane is added to the call metadata as ``x-opensergo-traffic`` and ``baggage``.

A routing failure raises :class:`RoutingRpcError`, a :class:`grpc.RpcError` whose ``code()`` is
``UNAVAILABLE`` (no instance) or ``UNIMPLEMENTED`` (no route matched: what Envoy answers for an
HTTP 404), and whose ``__cause__`` is the RoutingError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from opensergo.governance.routing.lanes import LANE_HEADER, LaneMark
from opensergo.governance.routing.model import Instance, NoAvailableInstance, NoRouteMatched, RoutingError
from opensergo.governance.routing.registry import Route, ServiceDirectory
from opensergo.governance.routing.resilience import CallPolicy
from opensergo.integrations import tracing
from opensergo.spec.resilience import Abort

__all__ = ["GrpcCallView", "RoutingChannel", "RoutingRpcError", "routing_channel"]

Metadata = tuple[tuple[str, str | bytes], ...]
ChannelFactory = Callable[[str], grpc.Channel]


class RoutingRpcError(grpc.RpcError):
    """Routing found no instance for the call (raised before anything is sent)."""

    def __init__(self, error: RoutingError) -> None:
        super().__init__(f"OpenSergo routing: {error}")
        self._code = (
            grpc.StatusCode.UNIMPLEMENTED
            if isinstance(error, NoRouteMatched)
            else grpc.StatusCode.UNAVAILABLE
        )
        self._details = f"OpenSergo routing: {error}"

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class GrpcCallView:
    """A :class:`~opensergo.governance.routing.RequestView` over one gRPC call."""

    __slots__ = ("_metadata", "method", "path", "scheme")

    def __init__(self, method: str, metadata: Metadata | None, authority: str = "") -> None:
        self.method = "POST"
        self.path = method
        self.scheme = "http"
        headers: dict[str, str] = {":authority": authority} if authority else {}
        for key, value in metadata or ():
            name = key.lower()
            if name not in headers and not name.endswith("-bin"):
                headers[name] = value.decode() if isinstance(value, bytes) else value
        self._metadata = headers

    def header(self, name: str) -> str | None:
        return self._metadata.get(name)

    def query(self, name: str) -> str | None:
        return None


class RoutingChannel(grpc.Channel):
    """A channel to ``service`` whose calls are each routed to a discovered instance.

    ``channel_factory(target)`` opens the sub-channel to ``"host:port"`` (default:
    ``grpc.insecure_channel(target, options)``, or ``grpc.secure_channel`` with ``credentials``).
    """

    def __init__(
        self,
        directory: ServiceDirectory,
        service: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        channel_factory: ChannelFactory | None = None,
        propagate_lane: bool = True,
        protocol: str = "grpc",
    ) -> None:
        self.directory = directory
        self.service = service
        self._protocol = protocol
        self._propagate = propagate_lane
        if channel_factory is None:
            opts = list(options)

            def channel_factory(target: str) -> grpc.Channel:
                if credentials is not None:
                    return grpc.secure_channel(target, credentials, options=opts)
                return grpc.insecure_channel(target, options=opts)

        self._factory = channel_factory
        self._channels: dict[tuple[str, int], grpc.Channel] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- routing -----------------------------------------------------------------------------------
    def _route(
        self, method: str, metadata: Metadata | None
    ) -> tuple[grpc.Channel, Instance, Metadata | None]:
        metadata, lane = self._lane_metadata(metadata)
        channel, instance, metadata, _, _ = self._routed(method, metadata, lane)
        return channel, instance, metadata

    def _routed(
        self, method: str, metadata: Metadata | None, lane: LaneMark | None
    ) -> tuple[grpc.Channel, Instance, Metadata | None, Route, GrpcCallView]:
        view = GrpcCallView(method, metadata, self.service)
        try:
            route = self.directory.route(self.service, view, lane=lane)
        except RoutingError as error:
            raise RoutingRpcError(error) from error
        if route.instance is None:  # a redirect or direct response: an HTTP-only answer
            raise RoutingRpcError(
                NoAvailableInstance(self.service, "the matched rule answers without a call")
            )
        tracing.routed(route.instance, method)
        return self._channel_for(route.instance), route.instance, metadata, route, view

    def _lane_metadata(self, metadata: Metadata | None) -> tuple[Metadata | None, LaneMark | None]:
        lanes = self.directory.lanes
        if self._propagate:
            outbound, lane = lanes.outbound_metadata(metadata)
            return tuple(outbound), lane
        present = next((v for k, v in metadata or () if k.lower() == LANE_HEADER), None)
        if present:
            return metadata, LaneMark(present.decode() if isinstance(present, bytes) else present)
        return metadata, lanes.current()

    def _channel_for(self, instance: Instance) -> grpc.Channel:
        address = instance.address(self._protocol)
        channel = self._channels.get(address)
        if channel is not None:
            return channel
        with self._lock:
            if self._closed:
                raise ValueError("the routing channel is closed")
            channel = self._channels.get(address)
            if channel is None:
                host, port = address
                target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                channel = self._factory(target)
                self._channels[address] = channel
                self._prune(keep=address)
        return channel

    def _prune(self, keep: tuple[str, int]) -> None:
        """Close sub-channels of instances that left discovery (called under the lock)."""
        live = {i.address(self._protocol) for i in self.directory.instances(self.service)}
        for address in [a for a in self._channels if a != keep and a not in live]:
            self._channels.pop(address).close()

    def channels(self) -> dict[tuple[str, int], grpc.Channel]:
        """The open sub-channels by instance address."""
        return dict(self._channels)

    # -- grpc.Channel ------------------------------------------------------------------------------
    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return _UnaryUnary(self, method, request_serializer, response_deserializer)

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return _UnaryStream(self, method, request_serializer, response_deserializer)

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamUnaryMultiCallable[Any, Any]:
        return _StreamUnary(self, method, request_serializer, response_deserializer)

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> grpc.StreamStreamMultiCallable[Any, Any]:
        return _StreamStream(self, method, request_serializer, response_deserializer)

    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        """Connectivity of the sub-channel of the instance a plain request would go to."""
        try:
            instance = self.directory.choose(self.service, GrpcCallView("/", None, self.service))
        except RoutingError as error:
            raise RoutingRpcError(error) from error
        self._channel_for(instance).subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        for channel in list(self._channels.values()):
            channel.unsubscribe(callback)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def __enter__(self) -> RoutingChannel:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self.close()
        return None


if TYPE_CHECKING:
    _UnaryUnaryBase = grpc.UnaryUnaryMultiCallable[Any, Any]
    _UnaryStreamBase = grpc.UnaryStreamMultiCallable[Any, Any]
    _StreamUnaryBase = grpc.StreamUnaryMultiCallable[Any, Any]
    _StreamStreamBase = grpc.StreamStreamMultiCallable[Any, Any]
else:
    _UnaryUnaryBase = grpc.UnaryUnaryMultiCallable
    _UnaryStreamBase = grpc.UnaryStreamMultiCallable
    _StreamUnaryBase = grpc.StreamUnaryMultiCallable
    _StreamStreamBase = grpc.StreamStreamMultiCallable


class _Callable:
    """Routes one call, runs ``invoke`` on the chosen instance's multi-callable, keeps in-flight."""

    kind = "unary_unary"

    def __init__(
        self,
        channel: RoutingChannel,
        method: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer

    def _blocking(self, attribute: str, first: Any, metadata: Metadata | None, kwargs: dict[str, Any]) -> Any:
        """A call that completes before returning (``__call__`` / ``with_call`` of unary responses),
        under the matched rule's timeout, retries (unary requests only) and fault injection."""
        channel = self._channel
        routed, lane = channel._lane_metadata(metadata)
        sub, instance, routed, route, view = channel._routed(self._method, routed, lane)
        if route.plain:
            return self._invoke(sub, instance, attribute, first, routed, kwargs)
        call = CallPolicy(route.policy)
        delay, abort = call.fault()
        if delay:
            time.sleep(delay)
        if abort is not None:
            raise FaultRpcError(abort)
        retriable = self.kind == "unary_unary"
        user_timeout = kwargs.get("timeout")
        while True:
            budget = call.try_timeout()
            if budget is not None:
                kwargs["timeout"] = budget if user_timeout is None else min(user_timeout, budget)
            try:
                result = self._invoke(sub, instance, attribute, first, routed, kwargs)
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
                route.report(instance, failed=code in TRANSPORT_CODES)
                backoff = call.retry_after_grpc(code.name) if retriable else None
                if backoff is None:
                    raise
            else:
                route.report(instance, status=200)
                return result
            if backoff:
                time.sleep(backoff)
            try:
                instance = route.retry_instance(view)
            except RoutingError as error:
                raise RoutingRpcError(error) from error
            sub = channel._channel_for(instance)

    def _invoke(
        self,
        sub: grpc.Channel,
        instance: Instance,
        attribute: str,
        first: Any,
        metadata: Metadata | None,
        kwargs: dict[str, Any],
    ) -> Any:
        target = getattr(sub, self.kind)(self._method, self._serializer, self._deserializer)
        instance.acquire()
        try:
            return getattr(target, attribute)(first, metadata=metadata, **kwargs)
        finally:
            instance.release()

    def _async(self, attribute: str, first: Any, metadata: Metadata | None, kwargs: dict[str, Any]) -> Any:
        """A call returning a future / response iterator: in flight until it is done."""
        target, instance, routed = self._target(metadata)
        instance.acquire()
        try:
            call = getattr(target, attribute)(first, metadata=routed, **kwargs)
        except BaseException:
            instance.release()
            raise
        call.add_done_callback(lambda _: instance.release())
        return call

    def _target(self, metadata: Metadata | None) -> tuple[Any, Instance, Metadata | None]:
        channel, instance, routed = self._channel._route(self._method, metadata)
        factory: Any = getattr(channel, self.kind)
        return factory(self._method, self._serializer, self._deserializer), instance, routed


TRANSPORT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class FaultRpcError(grpc.RpcError):
    """An abort injected by the rule's ``fault`` (no call is made)."""

    def __init__(self, abort: Abort) -> None:
        super().__init__("fault filter abort")
        if abort.grpc_status is not None:
            name = abort.grpc_status.strip().upper()
            self._code = grpc.StatusCode.__members__.get(name, grpc.StatusCode.UNAVAILABLE)
        else:
            self._code = _HTTP_TO_GRPC.get(abort.http_status or 503, grpc.StatusCode.UNKNOWN)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "fault filter abort"


# gRPC's mapping of HTTP statuses (doc/http-grpc-status-mapping.md), as Envoy applies it.
_HTTP_TO_GRPC = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    429: grpc.StatusCode.UNAVAILABLE,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.UNAVAILABLE,
}


def call_kwargs(
    timeout: float | None,
    credentials: grpc.CallCredentials | None,
    wait_for_ready: bool | None,
    compression: grpc.Compression | None,
) -> dict[str, Any]:
    return {
        "timeout": timeout,
        "credentials": credentials,
        "wait_for_ready": wait_for_ready,
        "compression": compression,
    }


class _UnaryUnary(_Callable, _UnaryUnaryBase):
    kind = "unary_unary"

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        return self._blocking("__call__", request, metadata, kwargs)

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> tuple[Any, grpc.Call]:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        result: tuple[Any, grpc.Call] = self._blocking("with_call", request, metadata, kwargs)
        return result

    def future(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> grpc.CallFuture[Any]:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        future: grpc.CallFuture[Any] = self._async("future", request, metadata, kwargs)
        return future


class _UnaryStream(_Callable, _UnaryStreamBase):
    kind = "unary_stream"

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> grpc.CallIterator[Any]:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        responses: grpc.CallIterator[Any] = self._async("__call__", request, metadata, kwargs)
        return responses


class _StreamUnary(_Callable, _StreamUnaryBase):
    kind = "stream_unary"

    def __call__(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        return self._blocking("__call__", request_iterator, metadata, kwargs)

    def with_call(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> tuple[Any, grpc.Call]:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        result: tuple[Any, grpc.Call] = self._blocking("with_call", request_iterator, metadata, kwargs)
        return result

    def future(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> grpc.CallFuture[Any]:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        future: grpc.CallFuture[Any] = self._async("future", request_iterator, metadata, kwargs)
        return future


class _StreamStream(_Callable, _StreamStreamBase):
    kind = "stream_stream"

    def __call__(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> grpc.CallIterator[Any]:
        kwargs = call_kwargs(timeout, credentials, wait_for_ready, compression)
        responses: grpc.CallIterator[Any] = self._async("__call__", request_iterator, metadata, kwargs)
        return responses


def routing_channel(
    directory: ServiceDirectory,
    service: str,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
    channel_factory: ChannelFactory | None = None,
    propagate_lane: bool = True,
) -> RoutingChannel:
    """A :class:`RoutingChannel` to ``service`` (an app name in discovery)."""
    return RoutingChannel(
        directory,
        service,
        credentials=credentials,
        options=options,
        channel_factory=channel_factory,
        propagate_lane=propagate_lane,
    )
