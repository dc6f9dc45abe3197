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

import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response

from opensergo.governance.routing.lanes import LANE_HEADER, LaneMark
from opensergo.governance.routing.model import Instance, RoutingError
from opensergo.governance.routing.outbound import PropagateLane, check_propagate, should_route_predicate
from opensergo.governance.routing.registry import Route, ServiceDirectory
from opensergo.governance.routing.resilience import FAULT_ABORT_BODY, TIMEOUT_BODY, CallPolicy
from opensergo.integrations import tracing

_log = logging.getLogger("opensergo.routing")

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

    def send(  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
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
            route = self.directory.route(service, view, lane=lane)
        except RoutingError as error:
            raise requests.ConnectionError(f"OpenSergo routing: {error}", request=request) from error
        answer = _answer_without_call(request, route, parts)
        if answer is not None:
            return answer
        kwargs = {"stream": stream, "verify": verify, "cert": cert, "proxies": proxies}
        policy = route.policy
        if route.plain:
            assert route.instance is not None
            return self._send_to(request, parts, route.instance, timeout, kwargs)
        call = CallPolicy(policy)
        delay, abort = call.fault()
        if delay:
            time.sleep(delay)
        if abort is not None:
            return _response(request, abort.http_status or 503, FAULT_ABORT_BODY)
        if policy.rewrite is not None and route.rule is not None:
            path = route.rule.rewritten_path(view)
            if path is not None:
                parts = parts._replace(path=path)
            if policy.rewrite.authority is not None:
                headers["Host"] = policy.rewrite.authority
        if policy.mirror is not None:
            self._mirror(request, parts, route, view)
        instance = route.instance
        assert instance is not None
        while True:
            try_timeout = call.try_timeout()
            response: Response | None = None
            try:
                response = self._send_to(request, parts, instance, _min_timeout(timeout, try_timeout), kwargs)
            except requests.exceptions.Timeout:
                route.report(instance, failed=True)
                backoff = call.retry_after_failure("timeout")
                if backoff is None:
                    if call.timed:
                        return _response(request, 504, TIMEOUT_BODY)
                    raise
            except requests.ConnectionError:
                route.report(instance, failed=True)
                backoff = call.retry_after_failure("connect")
                if backoff is None:
                    raise
            else:
                route.report(instance, status=response.status_code)
                backoff = call.retry_after_status(response.status_code)
                if backoff is None:
                    return response
                response.close()
            if backoff:
                time.sleep(backoff)
            try:
                instance = route.retry_instance(view)
            except RoutingError as error:
                raise requests.ConnectionError(f"OpenSergo routing: {error}", request=request) from error

    def _send_to(
        self,
        request: PreparedRequest,
        parts: SplitResult,
        instance: Instance,
        timeout: Any,
        kwargs: dict[str, Any],
    ) -> Response:
        headers: Any = request.headers
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
            response = super().send(request, timeout=timeout, **kwargs)
        except BaseException:
            instance.release()
            raise
        if kwargs["stream"]:
            _release_on_close(response, instance)
        else:
            instance.release()
        return response

    def _mirror(
        self, request: PreparedRequest, parts: SplitResult, route: Route, view: RequestsRequestView
    ) -> None:
        """A copy to the mirror's instance, its answer ignored (Envoy: Host + ``-shadow``)."""
        mirror = route.policy.mirror
        assert mirror is not None
        if random.random() * 100 >= mirror.percent:
            return
        try:
            instance = self.directory.choose(mirror.host, view, lane=route.lane)
        except RoutingError:
            return
        copy = request.copy()
        copy.headers["Host"] = f"{request.headers.get('Host') or parts.netloc}-shadow"
        host, port = instance.address(parts.scheme)
        copy.url = urlunsplit((parts.scheme, f"{host}:{mirror.port or port}", parts.path, parts.query, ""))
        adapter = HTTPAdapter()

        def run() -> None:
            try:
                adapter.send(copy, timeout=30).close()
            except Exception as error:  # a mirror's failure never reaches the caller
                _log.debug("mirror to %s failed: %s", copy.url, error)
            finally:
                adapter.close()

        threading.Thread(target=run, name="opensergo-mirror", daemon=True).start()


def _min_timeout(user: Any, seconds: float | None) -> Any:
    if seconds is None:
        return user
    if user is None:
        return seconds
    if isinstance(user, tuple):
        return tuple(seconds if t is None else min(t, seconds) for t in user)
    return min(float(user), seconds)


def _response(
    request: PreparedRequest, status: int, body: bytes, headers: dict[str, str] | None = None
) -> Response:
    response = Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    response.url = request.url or ""
    response.request = request
    response.reason = ""
    return response


def _answer_without_call(request: PreparedRequest, route: Route, parts: SplitResult) -> Response | None:
    policy = route.policy
    if policy.redirect is not None:
        redirect = policy.redirect
        authority = redirect.authority or request.headers.get("Host") or parts.netloc
        if redirect.port:
            authority = f"{authority.rsplit(':', 1)[0]}:{redirect.port}"
        query = f"?{parts.query}" if parts.query else ""
        location = f"{redirect.scheme or parts.scheme}://{authority}{redirect.uri or parts.path}{query}"
        return _response(request, redirect.code, b"", {"location": location})
    if policy.direct_response is not None:
        return _response(request, policy.direct_response.status, policy.direct_response.body.encode())
    return None


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
