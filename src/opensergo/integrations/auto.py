"""Outbound governance for clients the application builds itself (what ``opensergo-run`` installs).

* httpx: a client's transport becomes ``GuardTransport(AutoRoutingTransport(<its transport>))``;
* requests: a session gets ``GuardAdapter(AutoRoutingAdapter())`` on ``http://`` and ``https://``;
* gRPC: ``grpc.insecure_channel`` / ``grpc.secure_channel`` to a service name (``backend:50051``)
  return a :class:`~opensergo.integrations.grpc_client.RoutingChannel`; every channel gets the
  :class:`~opensergo.integrations.grpc_guard.GuardClientInterceptor`.

Routing is lazy: it needs the process's :class:`ServiceDirectory`, which exists once governance
runs (:func:`directory`); before that, and for hosts that are not service names (an IP address,
a dotted domain), calls go through unrouted. Routing, lanes and the outbound guards then behave
exactly as with the integrations installed by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.models import PreparedRequest, Response

from opensergo.governance.routing.outbound import default_should_route
from opensergo.governance.routing.registry import ServiceDirectory
from opensergo.integrations.httpx import AsyncRoutingTransport, RoutingTransport
from opensergo.integrations.requests import RoutingAdapter

__all__ = [
    "AsyncAutoRoutingTransport",
    "AutoRoutingAdapter",
    "AutoRoutingTransport",
    "directory",
    "route_target",
]

_lock = threading.Lock()
_directory: ServiceDirectory | None = None
_client: Any = None


def directory() -> ServiceDirectory | None:
    """The process's ServiceDirectory over the running governance client (None: not running)."""
    global _directory, _client
    from opensergo.governance.runtime import current

    governance = current()
    if governance is None:
        return None
    if _client is governance.client and _directory is not None:
        return _directory
    with _lock:
        if _client is not governance.client or _directory is None:
            _directory = ServiceDirectory(governance.client)
            _client = governance.client
        return _directory


class AutoRoutingTransport(httpx.BaseTransport):
    """Routes service hosts once governance runs; passes everything through before."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self._transport = transport
        self._routed: RoutingTransport | None = None
        self._for: ServiceDirectory | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        routes = directory()
        if routes is None:
            return self._transport.handle_request(request)
        if self._routed is None or self._for is not routes:
            self._routed, self._for = RoutingTransport(routes, self._transport), routes
        return self._routed.handle_request(request)

    def close(self) -> None:
        self._transport.close()


class AsyncAutoRoutingTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of :class:`AutoRoutingTransport`."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport
        self._routed: AsyncRoutingTransport | None = None
        self._for: ServiceDirectory | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        routes = directory()
        if routes is None:
            return await self._transport.handle_async_request(request)
        if self._routed is None or self._for is not routes:
            self._routed, self._for = AsyncRoutingTransport(routes, self._transport), routes
        return await self._routed.handle_async_request(request)

    async def aclose(self) -> None:
        await self._transport.aclose()


class AutoRoutingAdapter(BaseAdapter):
    """A requests adapter routing service hosts once governance runs (plain HTTPAdapter before)."""

    def __init__(self) -> None:
        super().__init__()
        self._plain = HTTPAdapter()
        self._routed: RoutingAdapter | None = None
        self._for: ServiceDirectory | None = None

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        routes = directory()
        adapter: HTTPAdapter = self._plain
        if routes is not None:
            if self._routed is None or self._for is not routes:
                self._routed, self._for = RoutingAdapter(routes), routes
            adapter = self._routed
        return adapter.send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )

    def close(self) -> None:
        self._plain.close()
        if self._routed is not None:
            self._routed.close()


def route_target(target: str) -> str | None:
    """The service a gRPC channel target names (``backend:50051``, ``dns:///backend``), or None."""
    text = target
    for prefix in ("dns:///", "dns:"):
        text = text.removeprefix(prefix)
    host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    return host if default_should_route(host) else None
