"""ASGI middleware (Starlette, FastAPI, any ASGI app) that guards inbound HTTP requests.

::

    from opensergo.integrations.asgi import OpenSergoMiddleware

    app = FastAPI()
    app.add_middleware(OpenSergoMiddleware)  # or: app = OpenSergoMiddleware(app)

Each HTTP request is one entry of resource ``METHOD:/route/template`` (``GET:/users/{id}``):
the template of the Starlette/FastAPI route that matches the request (through mounts, with the
mount prefix; converters dropped), else the raw path (``GET:/no/such/route``). ``resource=``
replaces the naming with your own ``scope -> str``.

* The entry is taken with :meth:`Engine.aentry`, so a request queued by a ThrottlingStrategy
  waits without blocking the event loop.
* Blocked: the response is the rule's HttpRequestFallbackAction (status, body, headers); without
  one, ``default_response`` (429 ``Blocked by OpenSergo (flow limiting)``); ``block_handler``
  may render a block differently. The engine logs every block at DEBUG (logger
  ``opensergo.governance``) and counts it in :meth:`Engine.block_counts`.
* Errors for circuit breakers: an exception raised by the app (re-raised after being counted)
  and a response status >= ``error_status`` (500) -- reported as
  :class:`~opensergo.governance.blocking.ErrorStatus`.
* The entry ends when the app returns, i.e. after the whole (possibly streamed) body was sent,
  so RT and concurrency cover the full response.
* Lanes: the request's traffic lane is entered from its headers for the app's duration
  (``lanes=False`` to skip), so outbound integrations propagate it.

Hot-parameter limits (HotParamRateLimitStrategy) read the request's header, query parameter, path
parameter (of the route template) or client address through :func:`scope_param`.

WebSocket and lifespan scopes pass through untouched, and so does a request that an outer
OpenSergo middleware guards already (an app mounted in another, or installed twice).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from functools import partial
from typing import Any

from opensergo.governance.api import default_engine
from opensergo.governance.blocking import DEFAULT_BLOCK_RESPONSE, BlockHandler, ErrorStatus, block_response
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance.engine import Engine
from opensergo.governance.faulttolerance.fallback import FallbackResponse
from opensergo.governance.routing import lanes as _lanes
from opensergo.integrations import tracing
from opensergo.integrations.params import path_value, query_value
from opensergo.spec.faulttolerance import ParamSource

__all__ = ["OpenSergoMiddleware", "RouteResolver", "raw_path_resource", "scope_param"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ResourceNamer = Callable[[Scope], str]

_CACHE_LIMIT = 4096
GUARDED = "opensergo.guarded"
"""Scope key set by the first OpenSergo middleware; inner ones then pass the request through."""


def raw_path_resource(scope: Scope) -> str:
    """``METHOD:/raw/path`` (without the query string)."""
    return f"{scope['method']}:{scope['path']}"


def scope_param(scope: Scope, source: ParamSource, name: str | None) -> str | None:
    """A request parameter for hot-parameter limits (see :mod:`opensergo.integrations.params`)."""
    if source is ParamSource.QUERY:
        query = scope.get("query_string")
        return query_value(query.decode("latin-1"), name) if query and name else None
    if source is ParamSource.HEADER:
        if not name:
            return None
        key = name.lower().encode("latin-1")
        for k, v in scope.get("headers", ()):
            if k.lower() == key:
                return bytes(v).decode("latin-1")
        return None
    if source is ParamSource.PATH:
        if not name:
            return None
        known = scope.get("path_params")  # set when routing already happened (an inner app)
        if known and name in known:
            return str(known[name])
        return path_value(scope.get(tracing.ROUTE_KEY), _route_path(scope), name)
    if source is ParamSource.CLIENT_IP:
        client = scope.get("client")
        return str(client[0]) if client else None
    return None


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root:
        return path[len(root) :]
    return path


class RouteResolver:
    """Finds the route template of a request in a Starlette route table (``app.routes``).

    Matches exactly as Starlette's router does (first full match, else the first partial match,
    e.g. a wrong method), descending into ``Mount`` and ``Host``. Results are cached per
    (method, path) up to 4096 entries unless a ``Host`` route makes them depend on the host.
    """

    def __init__(self, routes: Sequence[Any] | Callable[[], Sequence[Any]]) -> None:
        self._routes = routes
        self._cache: dict[tuple[str, str], str | None] = {}
        self._cacheable = True

    @property
    def routes(self) -> Sequence[Any]:
        routes = self._routes
        return routes() if callable(routes) else routes

    def template(self, scope: Scope) -> str | None:
        """The matching route's path template (``/users/{id}``), or None."""
        key = (scope["method"], _route_path(scope))
        cache = self._cache
        found = cache.get(key, False)
        if found is not False:
            return found  # type: ignore[return-value]
        result = self._match(self.routes, scope, "")
        if self._cacheable:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = result
        return result

    def _match(self, routes: Sequence[Any], scope: Scope, prefix: str) -> str | None:
        from starlette.routing import Match

        partial: tuple[Any, Scope] | None = None
        for route in _flatten(routes):
            if isinstance(_original(route), _host_type()):
                self._cacheable = False
            try:
                match, child = route.matches(scope)
            except Exception:  # a route that cannot judge this scope
                continue
            if match is Match.FULL:
                return self._template(route, {**scope, **child}, prefix)
            if match is Match.PARTIAL and partial is None:
                partial = (route, child)
        if partial is not None:
            route, child = partial
            return self._template(route, {**scope, **child}, prefix)
        return None

    def _template(self, route: Any, scope: Scope, prefix: str) -> str | None:
        from starlette.routing import Host, Mount

        original = _original(route)
        if isinstance(original, Mount):
            inner_routes = route.routes
            inner = self._match(inner_routes, scope, prefix + route.path) if inner_routes else None
            return inner if inner is not None else prefix + str(route.path_format)
        if isinstance(original, Host):
            return self._match(route.routes, scope, prefix)
        path_format = getattr(route, "path_format", None)
        return prefix + path_format if isinstance(path_format, str) else None


def _host_type() -> type[Any]:
    from starlette.routing import Host

    return Host


def _original(route: Any) -> Any:
    """The route a FastAPI RouteContext stands for (the route itself otherwise)."""
    return getattr(route, "original_route", route)


def _flatten(routes: Sequence[Any]) -> Sequence[Any]:
    """FastAPI >= 0.160 keeps included routers as one route; expand them into their routes
    (with the prefix applied) through its public ``iter_route_contexts``."""
    if not any(type(route).__name__ == "_IncludedRouter" for route in routes):
        return routes
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - other FastAPI versions flatten on include
        return routes
    return list(iter_route_contexts(list(routes)))


class OpenSergoMiddleware:
    """Guards every HTTP request of ``app``; see the module documentation.

    ``engine``: default the process-wide engine. ``resource``: a ``scope -> str`` naming
    function (default: route template, else raw path). ``routes``: the route table to resolve
    templates from (default: that of the Starlette app in ``scope["app"]``, else ``app.routes``).
    ``default_response``: the response for a block without a fallback action. ``block_handler``:
    ``BlockedError -> FallbackResponse | None`` to render blocks yourself. ``error_status``: a
    response status at or above it counts as an error (default 500). ``lanes``: enter the
    traffic lane from the request headers.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        engine: Engine | None = None,
        resource: ResourceNamer | None = None,
        routes: Sequence[Any] | None = None,
        default_response: FallbackResponse = DEFAULT_BLOCK_RESPONSE,
        block_handler: BlockHandler | None = None,
        error_status: int = 500,
        lanes: bool = True,
    ) -> None:
        self.app = app
        self.engine = engine if engine is not None else default_engine()
        self.default_response = default_response
        self.block_handler = block_handler
        self.error_status = error_status
        self.lanes = lanes
        self._namer = resource
        self._resolver: RouteResolver | None = RouteResolver(routes) if routes is not None else None
        self._resolvers: dict[int, RouteResolver] = {}
        self._rendered: dict[FallbackResponse, tuple[int, list[tuple[bytes, bytes]], bytes]] = {}
        self._traced = tracing.TracedASGI(self._handle)  # the server span around everything

    # -- naming ----------------------------------------------------------------------------------

    def resource_name(self, scope: Scope) -> str:
        """The resource of an HTTP scope (what the middleware guards)."""
        if self._namer is not None:
            return self._namer(scope)
        resolver = self._resolver or self._resolver_for(scope)
        if resolver is not None:
            template = resolver.template(scope)
            if template is not None:
                scope[tracing.ROUTE_KEY] = template
                return f"{scope['method']}:{template}"
        return raw_path_resource(scope)

    def _resolver_for(self, scope: Scope) -> RouteResolver | None:
        owner = scope.get("app")
        if owner is None or not hasattr(owner, "routes"):
            owner = self.app if hasattr(self.app, "routes") else None
            if owner is None:
                return None
        resolver = self._resolvers.get(id(owner))
        if resolver is None:
            resolver = self._resolvers[id(owner)] = RouteResolver(lambda: owner.routes)
        return resolver

    # -- the ASGI callable -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or GUARDED in scope:  # one entry per request, however wrapped
            await self.app(scope, receive, send)
            return
        scope[GUARDED] = True
        await self._traced(scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = None
        if self.lanes:
            path = scope.get("raw_path")
            target = path.decode("latin-1") if isinstance(path, bytes) else scope["path"]
            query = scope.get("query_string")
            if query:
                target = f"{target}?{query.decode('latin-1')}"
            token = _lanes.enter_from_headers(
                scope.get("headers", ()),
                method=scope["method"],
                path=target,
                scheme=scope.get("scheme", "http"),
            )
        try:
            await self._guarded(scope, receive, send)
        finally:
            if token is not None:
                _lanes.reset(token)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        resource = self.resource_name(scope)
        tracing.inbound(resource, scope["method"], scope.get(tracing.ROUTE_KEY))
        try:
            entry = await self.engine.aentry(resource, params=partial(scope_param, scope))
        except BlockedError as blocked:
            tracing.blocked(blocked)
            await self._send_block(blocked, send)
            return
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            entry.exit(exc)
            raise
        entry.exit(ErrorStatus(status, resource) if status >= self.error_status else None)

    async def _send_block(self, blocked: BlockedError, send: Send) -> None:
        response = block_response(blocked, self.default_response, self.block_handler)
        status, headers, body = self._render(response)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _render(self, response: FallbackResponse) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        rendered = self._rendered.get(response)
        if rendered is None:
            body = response.body_bytes
            headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
            if not any(k == b"content-length" for k, _ in headers):
                headers.append((b"content-length", str(len(body)).encode()))
            rendered = (response.status, headers, body)
            if len(self._rendered) > 256:
                self._rendered.clear()
            self._rendered[response] = rendered
        return rendered[0], list(rendered[1]), rendered[2]
