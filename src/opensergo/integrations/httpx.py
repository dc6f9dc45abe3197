"""httpx transports that route ``http://<service>/path`` to an instance chosen by OpenSergo rules.

>>> from opensergo.integrations.httpx import RoutingTransport
>>> client = httpx.Client(transport=RoutingTransport(directory))  # doctest: +SKIP
>>> client.get("http://service-provider/hello", headers={"tag": "v2"})  # doctest: +SKIP

Each request whose host is a service name (see ``services``) goes through
:meth:`ServiceDirectory.choose`: the URL's host and port are replaced by the chosen instance's
address for the URL scheme; the ``Host`` header keeps the logical name unless
``rewrite_host=True``. The lane of the current context (or a lane header already set on the
request) is written as ``x-opensergo-traffic`` and as a ``baggage`` member, and routes the
request. The instance's in-flight counter (least-request balancing) is held until the response
is closed. A routing failure raises :class:`httpx.ConnectError` whose ``__cause__`` is the
:class:`~opensergo.governance.routing.RoutingError`.

Which hosts are routed: ``services`` may be a collection of names or a predicate; by default a
single-label host name (``service-provider``, not ``localhost`` or an IP address) or a name
ending in ``.svc.cluster.local`` is routed, anything else is passed through untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterator
from typing import Any

import httpx

from opensergo.governance.routing.lanes import LANE_HEADER, LaneMark
from opensergo.governance.routing.model import Instance, RoutingError
from opensergo.governance.routing.outbound import (
    PropagateLane,
    check_propagate,
    default_should_route,
    should_route_predicate,
)
from opensergo.governance.routing.registry import ServiceDirectory
from opensergo.integrations import tracing

__all__ = [
    "AsyncRoutingTransport",
    "HttpxRequestView",
    "PropagateLane",
    "RoutingTransport",
    "async_routing_client",
    "default_should_route",
    "routing_client",
]


class HttpxRequestView:
    """A :class:`~opensergo.governance.routing.RequestView` over an :class:`httpx.Request`."""

    __slots__ = ("_params", "_request", "method", "path", "scheme")

    def __init__(self, request: httpx.Request) -> None:
        self._request = request
        url = request.url
        self.method = request.method
        self.path = url.path
        self.scheme = url.scheme
        self._params: httpx.QueryParams | None = None

    def header(self, name: str) -> str | None:
        value: str | None = self._request.headers.get(name)
        return value

    def query(self, name: str) -> str | None:
        params = self._params
        if params is None:
            params = self._params = self._request.url.params
        value: str | None = params.get(name)
        return value


class _Router:
    """What the sync and async transports share."""

    def __init__(
        self,
        directory: ServiceDirectory,
        services: Collection[str] | Callable[[str], bool] | None,
        rewrite_host: bool,
        propagate_lane: PropagateLane,
    ) -> None:
        check_propagate(propagate_lane)
        self.directory = directory
        self.should_route = should_route_predicate(services)
        self.rewrite_host = rewrite_host
        self.propagate = propagate_lane

    def prepare(self, request: httpx.Request) -> tuple[str | None, LaneMark | None]:
        """The service to route to (None: pass through) and the lane, written into the headers."""
        host = request.url.host
        service = host if self.should_route(host) else None
        lanes = self.directory.lanes
        if self.propagate == "all" or (self.propagate == "routed" and service is not None):
            return service, lanes.inject(request.headers)
        if service is None:
            return None, None
        present = request.headers.get(LANE_HEADER)
        return service, LaneMark(present) if present else lanes.current()

    def rewrite(self, request: httpx.Request, instance: Instance) -> None:
        scheme = request.url.scheme
        address, port = instance.address(scheme)
        tracing.routed(instance, f"{address}:{port}")
        request.url = _with_address(request.url, address, port)
        if self.rewrite_host:
            host = f"[{address}]" if ":" in address else address
            request.headers["host"] = f"{host}:{port}"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _with_address(url: httpx.URL, address: str, port: int) -> httpx.URL:
    """``url.copy_with(host=address, port=port)`` without re-parsing the URL (16 us -> 1 us).

    ``copy_with`` re-validates the whole URL; for an IPv4 address or a host name we replace the
    two fields of httpx's parsed form directly, and fall back to ``copy_with`` otherwise.
    """
    reference = getattr(url, "_uri_reference", None)
    if reference is None or ":" in address or not hasattr(reference, "_replace"):
        return url.copy_with(host=address, port=port)
    if _DEFAULT_PORTS.get(url.scheme) == port:
        normalized: int | None = None
    else:
        normalized = port
    fast = httpx.URL.__new__(httpx.URL)
    fast._uri_reference = reference._replace(host=address.lower(), port=normalized)
    return fast


def _connect_error(request: httpx.Request, error: RoutingError) -> httpx.ConnectError:
    return httpx.ConnectError(f"OpenSergo routing: {error}", request=request)


class _TrackedStream(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, instance: Instance) -> None:
        self._stream = stream
        self._instance: Instance | None = instance

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            instance, self._instance = self._instance, None
            if instance is not None:
                instance.release()


class _AsyncTrackedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, instance: Instance) -> None:
        self._stream = stream
        self._instance: Instance | None = instance

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            instance, self._instance = self._instance, None
            if instance is not None:
                instance.release()


class RoutingTransport(httpx.BaseTransport):
    """A sync httpx transport: routes service hosts, then delegates to ``transport``.

    ``transport`` defaults to ``httpx.HTTPTransport(**transport_kwargs)``.
    """

    def __init__(
        self,
        directory: ServiceDirectory,
        transport: httpx.BaseTransport | None = None,
        *,
        services: Collection[str] | Callable[[str], bool] | None = None,
        rewrite_host: bool = False,
        propagate_lane: PropagateLane = "routed",
        **transport_kwargs: Any,
    ) -> None:
        self._router = _Router(directory, services, rewrite_host, propagate_lane)
        self._transport = transport if transport is not None else httpx.HTTPTransport(**transport_kwargs)

    @property
    def directory(self) -> ServiceDirectory:
        return self._router.directory

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        router = self._router
        service, lane = router.prepare(request)
        if service is None:
            return self._transport.handle_request(request)
        try:
            instance = router.directory.choose(service, HttpxRequestView(request), lane=lane)
        except RoutingError as error:
            raise _connect_error(request, error) from error
        router.rewrite(request, instance)
        instance.acquire()
        try:
            response = self._transport.handle_request(request)
        except BaseException:
            instance.release()
            raise
        if response.is_closed or not isinstance(response.stream, httpx.SyncByteStream):
            instance.release()  # already read to the end (e.g. a mock transport's response)
        else:
            response.stream = _TrackedStream(response.stream, instance)
        return response

    def close(self) -> None:
        self._transport.close()


class AsyncRoutingTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`RoutingTransport` (default inner: ``httpx.AsyncHTTPTransport``)."""

    def __init__(
        self,
        directory: ServiceDirectory,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        services: Collection[str] | Callable[[str], bool] | None = None,
        rewrite_host: bool = False,
        propagate_lane: PropagateLane = "routed",
        **transport_kwargs: Any,
    ) -> None:
        self._router = _Router(directory, services, rewrite_host, propagate_lane)
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport(**transport_kwargs)

    @property
    def directory(self) -> ServiceDirectory:
        return self._router.directory

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        router = self._router
        service, lane = router.prepare(request)
        if service is None:
            return await self._transport.handle_async_request(request)
        try:
            instance = await router.directory.achoose(service, HttpxRequestView(request), lane=lane)
        except RoutingError as error:
            raise _connect_error(request, error) from error
        router.rewrite(request, instance)
        instance.acquire()
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException:
            instance.release()
            raise
        if response.is_closed or not isinstance(response.stream, httpx.AsyncByteStream):
            instance.release()
        else:
            response.stream = _AsyncTrackedStream(response.stream, instance)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


def routing_client(directory: ServiceDirectory, **kwargs: Any) -> httpx.Client:
    """An :class:`httpx.Client` with a :class:`RoutingTransport` (``transport=`` becomes the inner one).

    Routing options (``services``, ``rewrite_host``, ``propagate_lane``) are taken from ``kwargs``.
    """
    options = {k: kwargs.pop(k) for k in ("services", "rewrite_host", "propagate_lane") if k in kwargs}
    inner = kwargs.pop("transport", None)
    return httpx.Client(transport=RoutingTransport(directory, inner, **options), **kwargs)


def async_routing_client(directory: ServiceDirectory, **kwargs: Any) -> httpx.AsyncClient:
    """The asyncio twin of :func:`routing_client`."""
    options = {k: kwargs.pop(k) for k in ("services", "rewrite_host", "propagate_lane") if k in kwargs}
    inner = kwargs.pop("transport", None)
    return httpx.AsyncClient(transport=AsyncRoutingTransport(directory, inner, **options), **kwargs)
