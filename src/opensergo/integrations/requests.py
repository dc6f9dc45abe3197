"""A requests ``HTTPAdapter`` that routes ``http://<service>/path`` by OpenSergo rules.

>>> session = requests.Session()
>>> session.mount("http://", RoutingAdapter(directory))  # doctest: +SKIP
>>> session.get("http://service-provider/hello", headers={"tag": "v2"})  # doctest: +SKIP

Same behaviour as :mod:`opensergo.integrations.httpx`: the URL's host and port become the chosen
instance's address, the ``Host`` header keeps the logical name (unless ``rewrite_host=True``),
the lane is written as ``x-opensergo-traffic`` and as a ``baggage`` member, and a routing failure
raises :class:`requests.ConnectionError` (its ``__cause__`` is the RoutingError). The instance's
in-flight count is held until ``send`` returns, or, with ``stream=True``, until the response is
closed (use ``with session.get(..., stream=True) as response``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response

from opensergo.governance.routing.lanes import LANE_HEADER, LaneMark
from opensergo.governance.routing.model import Instance, RoutingError
from opensergo.governance.routing.outbound import PropagateLane, check_propagate, should_route_predicate
from opensergo.governance.routing.registry import ServiceDirectory
from opensergo.integrations import tracing

__all__ = ["RequestsRequestView", "RoutingAdapter", "routing_session"]


class RequestsRequestView:
    """A :class:`~opensergo.governance.routing.RequestView` over a :class:`PreparedRequest`."""

    __slots__ = ("_headers", "_query", "_raw_query", "method", "path", "scheme")

    def __init__(self, request: PreparedRequest, scheme: str, path: str, query: str) -> None:
        self.method = request.method or "GET"
        self.scheme = scheme
        self.path = path or "/"
        self._headers: Mapping[str, str] = request.headers
        self._raw_query = query
        self._query: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        value = self._headers.get(name)
        return value if value is None or isinstance(value, str) else str(value)

    def query(self, name: str) -> str | None:
        if self._query is None:
            parsed: dict[str, str] = {}
            for key, value in parse_qsl(self._raw_query, keep_blank_values=True):
                parsed.setdefault(key, value)
            self._query = parsed
        return self._query.get(name)


class RoutingAdapter(HTTPAdapter):
    """Mount on ``http://`` (and ``https://``); other hosts pass through to plain HTTPAdapter."""

    def __init__(
        self,
        directory: ServiceDirectory,
        *,
        services: Collection[str] | Callable[[str], bool] | None = None,
        rewrite_host: bool = False,
        propagate_lane: PropagateLane = "routed",
        **adapter_kwargs: Any,
    ) -> None:
        check_propagate(propagate_lane)
        super().__init__(**adapter_kwargs)
        self.directory = directory
        self._should_route = should_route_predicate(services)
        self._rewrite_host = rewrite_host
        self._propagate = propagate_lane

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> Response:
        parts = urlsplit(request.url or "")
        host = parts.hostname or ""
        service = host if self._should_route(host) else None
        lanes = self.directory.lanes
        headers: Any = request.headers
        lane: LaneMark | None = None
        if self._propagate == "all" or (self._propagate == "routed" and service is not None):
            lane = lanes.inject(headers)
        if service is None:
            return super().send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        if self._propagate == "never":
            present = headers.get(LANE_HEADER)
            lane = LaneMark(present) if present else lanes.current()
        view = RequestsRequestView(request, parts.scheme, parts.path, parts.query)
        try:
            instance = self.directory.choose(service, view, lane=lane)
        except RoutingError as error:
            raise requests.ConnectionError(f"OpenSergo routing: {error}", request=request) from error
        address, port = instance.address(parts.scheme)
        tracing.routed(instance, f"{address}:{port}")
        netloc_host = f"[{address}]" if ":" in address else address
        request.url = urlunsplit(
            (parts.scheme, f"{netloc_host}:{port}", parts.path, parts.query, parts.fragment)
        )
        if self._rewrite_host:
            headers["Host"] = f"{netloc_host}:{port}"
        elif "Host" not in headers:
            headers["Host"] = parts.netloc.rpartition("@")[2]
        instance.acquire()
        try:
            response = super().send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        except BaseException:
            instance.release()
            raise
        if stream:
            _release_on_close(response, instance)
        else:
            instance.release()
        return response


def _release_on_close(response: Response, instance: Instance) -> None:
    original = response.close
    released = False

    def close() -> None:
        nonlocal released
        try:
            original()
        finally:
            if not released:
                released = True
                instance.release()

    setattr(response, "close", close)  # noqa: B010 - an instance attribute shadowing the method


def routing_session(directory: ServiceDirectory, **adapter_kwargs: Any) -> requests.Session:
    """A :class:`requests.Session` with a :class:`RoutingAdapter` mounted on http:// and https://."""
    session = requests.Session()
    adapter = RoutingAdapter(directory, **adapter_kwargs)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
