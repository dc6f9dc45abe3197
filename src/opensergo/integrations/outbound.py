"""Fault tolerance for outbound HTTP calls: httpx transports and a requests adapter.

::

    from opensergo.integrations.outbound import AsyncGuardTransport, GuardAdapter, GuardTransport

    client = httpx.Client(transport=GuardTransport())
    client = httpx.AsyncClient(transport=AsyncGuardTransport())
    session = guard_session(requests.Session())  # GuardAdapter on http:// and https://

Each call is one outbound entry (adaptive protection skips outbound entries) of resource
``METHOD:host/path`` (``GET:api.example.com/users/42``; the port is kept when not the scheme's
default, the query string is dropped). ``resource=`` takes your own ``request -> str``, e.g. to
fold ids into a template.

* Blocked: raises the :class:`~opensergo.governance.BlockedError` (rule, strategy, kind and
  fallback are on it). With ``use_fallback=True`` a rule's HttpRequestFallbackAction is returned
  as the response instead (status, body, headers), without calling the server; blocks without a
  fallback action still raise.
* Errors for circuit breakers: transport exceptions (connect errors, timeouts, ...) and
  responses with status >= ``error_status`` (500), reported as
  :class:`~opensergo.governance.blocking.ErrorStatus`.
* httpx: the entry ends when the response is closed (httpx closes it once the body is read, or
  at the end of ``with client.stream(...)``); the async transport takes the entry with
  :meth:`Engine.aentry`, so a throttled call waits without blocking the loop. requests: the
  entry ends when ``send`` returns (after the body was read, unless ``stream=True``).

The guards compose with the routing integrations: put the guard outside so the resource keeps
the logical service name, e.g. ``GuardTransport(RoutingTransport(directory))`` or
``GuardAdapter(RoutingAdapter(directory))``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import httpx
import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict

from opensergo.governance.api import default_engine
from opensergo.governance.blocking import ErrorStatus
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance.engine import Engine, Entry

__all__ = [
    "AsyncGuardTransport",
    "GuardAdapter",
    "GuardTransport",
    "guard_session",
    "httpx_resource",
    "requests_resource",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def httpx_resource(request: httpx.Request) -> str:
    """``METHOD:host[:port]/path`` of an httpx request."""
    url = request.url
    port = url.port
    host = url.host if port is None or _DEFAULT_PORTS.get(url.scheme) == port else f"{url.host}:{port}"
    return f"{request.method}:{host}{url.path or '/'}"


def requests_resource(request: PreparedRequest) -> str:
    """``METHOD:host[:port]/path`` of a prepared requests request."""
    from urllib.parse import urlsplit

    parts = urlsplit(request.url or "")
    host = parts.hostname or ""
    if parts.port is not None and _DEFAULT_PORTS.get(parts.scheme) != parts.port:
        host = f"{host}:{parts.port}"
    return f"{request.method or 'GET'}:{host}{parts.path or '/'}"


def _status_error(status: int, threshold: int, resource: str) -> ErrorStatus | None:
    return ErrorStatus(status, resource) if status >= threshold else None


# -- httpx ------------------------------------------------------------------------------------


def _httpx_fallback(blocked: BlockedError, request: httpx.Request) -> httpx.Response:
    fallback = blocked.fallback
    assert fallback is not None
    return httpx.Response(
        fallback.status, headers=list(fallback.headers), content=fallback.body_bytes, request=request
    )


class _EntryStream(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, entry: Entry, error: BaseException | None) -> None:
        self._stream = stream
        self._entry = entry
        self._error = error

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except BaseException as exc:
            self._entry.exit(exc)
            raise

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._entry.exit(self._error)


class _AsyncEntryStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, entry: Entry, error: BaseException | None) -> None:
        self._stream = stream
        self._entry = entry
        self._error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except BaseException as exc:
            self._entry.exit(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._entry.exit(self._error)


class GuardTransport(httpx.BaseTransport):
    """A sync httpx transport guarding each request, then delegating to ``transport``.

    ``transport`` defaults to ``httpx.HTTPTransport(**transport_kwargs)``.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        engine: Engine | None = None,
        resource: Callable[[httpx.Request], str] | None = None,
        use_fallback: bool = False,
        error_status: int = 500,
        **transport_kwargs: Any,
    ) -> None:
        self._transport = transport if transport is not None else httpx.HTTPTransport(**transport_kwargs)
        self.engine = engine if engine is not None else default_engine()
        self.resource = resource if resource is not None else httpx_resource
        self.use_fallback = use_fallback
        self.error_status = error_status

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        name = self.resource(request)
        try:
            entry = self.engine.entry(name, inbound=False)
        except BlockedError as blocked:
            if self.use_fallback and blocked.fallback is not None:
                return _httpx_fallback(blocked, request)
            raise
        try:
            response = self._transport.handle_request(request)
        except BaseException as exc:
            entry.exit(exc)
            raise
        error = _status_error(response.status_code, self.error_status, name)
        if response.is_closed:  # a response built from bytes is read and closed already
            entry.exit(error)
            return response
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)
        response.stream = _EntryStream(stream, entry, error)
        return response

    def close(self) -> None:
        self._transport.close()


class AsyncGuardTransport(httpx.AsyncBaseTransport):
    """An async httpx transport guarding each request, then delegating to ``transport``.

    ``transport`` defaults to ``httpx.AsyncHTTPTransport(**transport_kwargs)``.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        engine: Engine | None = None,
        resource: Callable[[httpx.Request], str] | None = None,
        use_fallback: bool = False,
        error_status: int = 500,
        **transport_kwargs: Any,
    ) -> None:
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport(**transport_kwargs)
        self.engine = engine if engine is not None else default_engine()
        self.resource = resource if resource is not None else httpx_resource
        self.use_fallback = use_fallback
        self.error_status = error_status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name = self.resource(request)
        try:
            entry = await self.engine.aentry(name, inbound=False)
        except BlockedError as blocked:
            if self.use_fallback and blocked.fallback is not None:
                return _httpx_fallback(blocked, request)
            raise
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException as exc:
            entry.exit(exc)
            raise
        error = _status_error(response.status_code, self.error_status, name)
        if response.is_closed:  # a response built from bytes is read and closed already
            entry.exit(error)
            return response
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _AsyncEntryStream(stream, entry, error)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


# -- requests ---------------------------------------------------------------------------------


def _requests_fallback(blocked: BlockedError, request: PreparedRequest) -> Response:
    from http import HTTPStatus

    fallback = blocked.fallback
    assert fallback is not None
    response = Response()
    response.status_code = fallback.status
    try:
        response.reason = HTTPStatus(fallback.status).phrase
    except ValueError:
        response.reason = "Blocked"
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for key, value in fallback.headers:
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    response.headers = headers
    response._content = fallback.body_bytes
    response.encoding = requests.utils.get_encoding_from_headers(headers) or "utf-8"
    response.url = request.url or ""
    response.request = request
    return response


class GuardAdapter(BaseAdapter):
    """A requests adapter guarding each request, then delegating to ``adapter``.

    ``adapter`` defaults to ``HTTPAdapter(**adapter_kwargs)``; mount the guard on ``http://``
    and ``https://`` (see :func:`guard_session`).
    """

    def __init__(
        self,
        adapter: BaseAdapter | None = None,
        *,
        engine: Engine | None = None,
        resource: Callable[[PreparedRequest], str] | None = None,
        use_fallback: bool = False,
        error_status: int = 500,
        **adapter_kwargs: Any,
    ) -> None:
        super().__init__()
        self.adapter = adapter if adapter is not None else HTTPAdapter(**adapter_kwargs)
        self.engine = engine if engine is not None else default_engine()
        self.resource = resource if resource is not None else requests_resource
        self.use_fallback = use_fallback
        self.error_status = error_status

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        name = self.resource(request)
        try:
            entry = self.engine.entry(name, inbound=False)
        except BlockedError as blocked:
            if self.use_fallback and blocked.fallback is not None:
                return _requests_fallback(blocked, request)
            raise
        try:
            response = self.adapter.send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
            if not stream:
                _ = response.content  # read the body inside the entry
        except BaseException as exc:
            entry.exit(exc)
            raise
        entry.exit(_status_error(response.status_code, self.error_status, name))
        return response

    def close(self) -> None:
        self.adapter.close()


def guard_session(session: requests.Session | None = None, **options: Any) -> requests.Session:
    """``session`` (default: a new one) with a :class:`GuardAdapter` on http:// and https://.

    ``options`` go to each adapter (``adapter=`` is not allowed here: one adapter per scheme).
    """
    session = session if session is not None else requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, GuardAdapter(**options))
    return session
