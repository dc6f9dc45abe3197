"""WSGI middleware (Flask, Django, any WSGI app) that guards inbound HTTP requests.

::

    from opensergo.integrations.wsgi import OpenSergoWSGIMiddleware, instrument_flask

    instrument_flask(flask_app)  # Flask: route templates as resource names
    application = OpenSergoWSGIMiddleware(wsgi_app)  # any WSGI app: raw paths
    # Django: opensergo.integrations.django.governed_wsgi_application() (URL routes as names)

Each request is one entry of resource ``METHOD:/path``. With :func:`instrument_flask` (or
``resource=FlaskResourceNamer(app)``) the path is the Flask URL rule that matches
(``GET:/users/<id>``; converters such as ``int:`` dropped), else the raw path. ``resource=``
replaces the naming with your own ``environ -> str``.

* Blocked: the rule's HttpRequestFallbackAction response; without one ``default_response``
  (429 ``Blocked by OpenSergo (flow limiting)``); ``block_handler`` may render it differently.
  The engine logs each block at DEBUG (logger ``opensergo.governance``) and counts it.
* A ThrottlingStrategy queues the caller by sleeping in its worker thread (WSGI is synchronous).
* Errors for circuit breakers: an exception from the app or from its body iterable, and a
  status >= ``error_status`` (500), reported as :class:`~opensergo.governance.blocking.ErrorStatus`.
* The entry ends when the body iterable is exhausted or closed (PEP 3333 ``close()``), so
  streamed responses hold their concurrency slot until they are done.
* Lanes: the traffic lane is entered from the request headers while the app runs and while its
  body is produced.
* Hot-parameter limits (HotParamRateLimitStrategy) read the request's header, query parameter,
  path parameter or ``REMOTE_ADDR`` through :func:`environ_param`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opensergo.governance.api import default_engine
from opensergo.governance.blocking import DEFAULT_BLOCK_RESPONSE, BlockHandler, ErrorStatus, block_response
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance.engine import Engine, Entry
from opensergo.governance.faulttolerance.fallback import FallbackResponse
from opensergo.governance.routing import lanes as _lanes
from opensergo.governance.routing.lanes import LaneMark
from opensergo.integrations import tracing
from opensergo.integrations.params import path_value, query_value
from opensergo.spec.faulttolerance import ParamSource

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

__all__ = [
    "FlaskResourceNamer",
    "OpenSergoWSGIMiddleware",
    "environ_param",
    "instrument_flask",
    "raw_path_resource",
    "strip_converters",
]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
ResourceNamer = Callable[[Environ], str]

_CACHE_LIMIT = 4096
PATH_PARAMS_KEY = "opensergo.path_params"
"""Environ key where a resource namer that resolved the route (Django's) leaves its path
parameters; without it they are read from the route template."""
GUARDED = "opensergo.guarded"
"""Environ key set by the first OpenSergo middleware; inner ones then pass the request through."""
_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")


def raw_path_resource(environ: Environ) -> str:
    """``METHOD:/path`` from ``PATH_INFO`` (``SCRIPT_NAME`` excluded, as routers see it)."""
    return f"{environ.get('REQUEST_METHOD', 'GET')}:{environ.get('PATH_INFO') or '/'}"


def environ_param(environ: Environ, source: ParamSource, name: str | None) -> str | None:
    """A request parameter for hot-parameter limits (see :mod:`opensergo.integrations.params`)."""
    if source is ParamSource.QUERY:
        return query_value(environ.get("QUERY_STRING") or "", name) if name else None
    if source is ParamSource.HEADER:
        if not name:
            return None
        key = name.upper().replace("-", "_")
        value = environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key)
        return value if isinstance(value, str) else None
    if source is ParamSource.PATH:
        if not name:
            return None
        known = environ.get(PATH_PARAMS_KEY)
        if known is not None:
            value = known.get(name)
            return None if value is None else str(value)
        return path_value(environ.get(tracing.ROUTE_KEY), environ.get("PATH_INFO") or "/", name)
    if source is ParamSource.CLIENT_IP:
        addr = environ.get("REMOTE_ADDR")
        return addr if isinstance(addr, str) and addr else None
    return None


def strip_converters(rule: str) -> str:
    """``/users/<int:id>`` -> ``/users/<id>``."""
    return _CONVERTER.sub(r"<\1>", rule)


class FlaskResourceNamer:
    """``METHOD:<Flask URL rule>`` (``GET:/users/<id>``), else the raw path; cached per request line."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._cache: dict[tuple[str, ...], tuple[str, str | None]] = {}

    def __call__(self, environ: Environ) -> str:
        from werkzeug.exceptions import HTTPException
        from werkzeug.routing import RoutingException

        app = self.app
        url_map = app.url_map
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO") or "/"
        host_dependent = url_map.host_matching or app.subdomain_matching
        key = (method, path, environ.get("HTTP_HOST", "")) if host_dependent else (method, path)
        found = self._cache.get(key)
        if found is not None:
            if found[1] is not None:
                environ[tracing.ROUTE_KEY] = found[1]
            return found[0]
        server_name = None if url_map.host_matching else app.config.get("SERVER_NAME")
        subdomain = None
        if not url_map.host_matching and not app.subdomain_matching:
            subdomain = url_map.default_subdomain or ""
        name = f"{method}:{path}"
        try:
            adapter = url_map.bind_to_environ(environ, server_name=server_name, subdomain=subdomain)
            rule, _ = adapter.match(method=method, return_rule=True)
            name = f"{method}:{strip_converters(rule.rule)}"
            environ[tracing.ROUTE_KEY] = rule.rule
        except (HTTPException, RoutingException):
            pass  # 404, 405, redirects: the raw path
        cache = self._cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = (name, environ.get(tracing.ROUTE_KEY))
        return name


class _GuardedBody:
    """The app's body iterable; ends the entry when exhausted or closed, whichever comes first."""

    __slots__ = ("_entry", "_error_status", "_mark", "_resource", "_result", "_status")

    def __init__(
        self,
        result: Iterable[bytes],
        entry: Entry,
        status: list[int],
        error_status: int,
        mark: LaneMark | None,
        resource: str,
    ) -> None:
        self._result = result
        self._entry = entry
        self._status = status
        self._error_status = error_status
        self._mark = mark
        self._resource = resource

    def __iter__(self) -> Iterator[bytes]:
        mark = self._mark
        it = iter(self._result)
        while True:
            token = _lanes.enter(mark) if mark is not None else None
            try:
                chunk = next(it)
            except StopIteration:
                break
            except BaseException as exc:
                self._entry.exit(exc)
                raise
            finally:
                if token is not None:
                    _lanes.reset(token)
            yield chunk
        self._finish()

    def _finish(self) -> None:
        status = self._status[0]
        self._entry.exit(ErrorStatus(status, self._resource) if status >= self._error_status else None)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._entry.exit(exc)
            raise
        finally:
            self._finish()


class OpenSergoWSGIMiddleware:
    """Guards every request of the WSGI ``app``; see the module documentation.

    ``engine``: default the process-wide engine. ``resource``: ``environ -> str`` (default
    :func:`raw_path_resource`). ``default_response``, ``block_handler``, ``error_status`` and
    ``lanes`` as for :class:`~opensergo.integrations.asgi.OpenSergoMiddleware`.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        engine: Engine | None = None,
        resource: ResourceNamer | None = None,
        default_response: FallbackResponse = DEFAULT_BLOCK_RESPONSE,
        block_handler: BlockHandler | None = None,
        error_status: int = 500,
        lanes: bool = True,
    ) -> None:
        self.app = app
        self.engine = engine if engine is not None else default_engine()
        self.resource_name: ResourceNamer = resource if resource is not None else raw_path_resource
        self.default_response = default_response
        self.block_handler = block_handler
        self.error_status = error_status
        self.lanes = lanes
        self._traced = tracing.TracedWSGI(self._handle)  # the server span around everything

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if GUARDED in environ:  # one entry per request, however wrapped
            return self.app(environ, start_response)
        environ[GUARDED] = True
        return self._traced(environ, start_response)

    def _handle(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        token = None
        mark: LaneMark | None = None
        if self.lanes:
            path = environ.get("RAW_URI") or environ.get("REQUEST_URI")
            if not path:
                path = (environ.get("SCRIPT_NAME") or "") + (environ.get("PATH_INFO") or "/")
                query = environ.get("QUERY_STRING")
                if query:
                    path = f"{path}?{query}"
            token = _lanes.enter_from_headers(
                _headers(environ),
                method=environ.get("REQUEST_METHOD", "GET"),
                path=path,
                scheme=environ.get("wsgi.url_scheme", "http"),
            )
            mark = _lanes.current()
        try:
            return self._guarded(environ, start_response, mark)
        finally:
            if token is not None:
                _lanes.reset(token)

    def _guarded(
        self, environ: Environ, start_response: StartResponse, mark: LaneMark | None
    ) -> Iterable[bytes]:
        resource = self.resource_name(environ)
        tracing.inbound(resource, environ.get("REQUEST_METHOD"), environ.get(tracing.ROUTE_KEY))
        try:
            entry = self.engine.entry(resource, params=partial(environ_param, environ))
        except BlockedError as blocked:
            tracing.blocked(blocked)
            response = block_response(blocked, self.default_response, self.block_handler)
            return _send_block(response, start_response)
        status = [0]

        def recording_start_response(
            status_line: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            try:
                status[0] = int(status_line[:3])
            except ValueError:
                status[0] = 0
            if exc_info is None:
                return start_response(status_line, headers)
            return start_response(status_line, headers, exc_info)

        try:
            result = self.app(environ, recording_start_response)
        except BaseException as exc:
            entry.exit(exc)
            raise
        return _GuardedBody(result, entry, status, self.error_status, mark, resource)


_REASONS = {429: "Too Many Requests", 503: "Service Unavailable", 200: "OK"}


def _send_block(response: FallbackResponse, start_response: StartResponse) -> list[bytes]:
    from http import HTTPStatus

    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = _REASONS.get(response.status, "Blocked")
    body = response.body_bytes
    headers = [(k, v) for k, v in response.headers]
    if not any(k.lower() == "content-length" for k, _ in headers):
        headers.append(("Content-Length", str(len(body))))
    start_response(f"{response.status} {reason}", headers)
    return [body]


def _headers(environ: Environ) -> list[tuple[str, str]]:
    """The request headers of a WSGI environ (only the ones lanes read are needed, but cheap)."""
    out: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append((key[5:].replace("_", "-").lower(), value))
    return out


def instrument_flask(app: Flask, **options: Any) -> OpenSergoWSGIMiddleware:
    """Wrap ``app.wsgi_app`` in :class:`OpenSergoWSGIMiddleware` naming resources by URL rule.

    ``options`` go to the middleware. Idempotent: an app already instrumented keeps its
    middleware (which is returned).
    """
    current = app.wsgi_app
    if isinstance(current, OpenSergoWSGIMiddleware):
        return current
    options.setdefault("resource", FlaskResourceNamer(app))
    middleware = OpenSergoWSGIMiddleware(current, **options)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    return middleware
