"""Server spans for the inbound integrations, from OpenTelemetry's maintained instrumentations.

The governance middlewares and interceptors put the OTel instrumentation outside themselves, so
the server span covers the whole request, a blocked one included, and the trace context and
baggage of the request are extracted before the lane is read:

* ASGI: ``opentelemetry-instrumentation-asgi``'s middleware (:class:`TracedASGI`), unless the
  request has a server span already (FastAPI's native telemetry makes one: it is annotated);
* WSGI (Flask, Django, others): ``opentelemetry-instrumentation-wsgi``'s (:class:`TracedWSGI`);
* gRPC servers, sync and aio: ``opentelemetry-instrumentation-grpc``'s server interceptors
  (:func:`grpc_server`, :func:`grpc_aio_server`).

While tracing is off (:func:`opensergo.observability.enable_tracing` not called) each is one
flag test. OpenSergo's attributes (resource, route, lane, block, route decision) are set by the
functions of :mod:`opensergo.observability.spans`, re-exported here for the integrations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeVar

from opentelemetry import trace

from opensergo.governance.routing.model import Instance
from opensergo.governance.routing.registry import last_route
from opensergo.observability import spans
from opensergo.observability.spans import blocked, enabled, inbound

__all__ = [
    "ROUTE_KEY",
    "TracedASGI",
    "TracedWSGI",
    "blocked",
    "enabled",
    "grpc_aio_server",
    "grpc_server",
    "inbound",
    "routed",
]

ROUTE_KEY = "opensergo.route"
"""Scope / environ key where a resource namer leaves the route template it matched."""

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
Handler = TypeVar("Handler")


def routed(instance: Instance, key: str) -> None:
    """Route attributes (rule, destination, subset, instance) for the client span of the call
    about to go to ``instance``; ``key`` is its ``host:port`` (HTTP) or full method (gRPC)."""
    if enabled():
        spans.routed(instance, key, last_route())


def _asgi_span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    # The HTTP conventions name a server span "{method} {route}", or "{method}" while the route
    # is unknown; :func:`inbound` renames it once the route is resolved (never the raw path,
    # which would make one span name per URL).
    method = str(scope.get("method") or "HTTP")
    return method, {}


class TracedASGI:
    """``app`` behind OTel's ASGI middleware while tracing is on; ``app`` itself otherwise."""

    __slots__ = ("_otel", "_provider", "app")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._provider: Any = None
        self._otel: Any = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        provider = spans.tracer_provider()
        if provider is None or trace.get_current_span().is_recording():
            # Off; or a server span exists already (FastAPI's native telemetry, or an OTel
            # middleware the app installed): ours would nest a second one.
            await self.app(scope, receive, send)
            return
        if provider is not self._provider:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

            self._otel = OpenTelemetryMiddleware(
                self.app,
                default_span_details=_asgi_span_details,
                exclude_spans=["receive", "send"],
                tracer_provider=provider,
            )
            self._provider = provider
        await self._otel(scope, receive, send)


def _wsgi_request_hook(span: Any, environ: dict[str, Any]) -> None:
    if span.is_recording():
        span.update_name(str(environ.get("REQUEST_METHOD") or "HTTP"))  # see _asgi_span_details


class TracedWSGI:
    """``app`` behind OTel's WSGI middleware while tracing is on; ``app`` itself otherwise."""

    __slots__ = ("_otel", "_provider", "app")

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self._provider: Any = None
        self._otel: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        provider = spans.tracer_provider()
        if provider is None or trace.get_current_span().is_recording():  # see TracedASGI
            return self.app(environ, start_response)
        if provider is not self._provider:
            from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

            self._otel = OpenTelemetryMiddleware(
                self.app, request_hook=_wsgi_request_hook, tracer_provider=provider
            )
            self._provider = provider
        result: Iterable[bytes] = self._otel(environ, start_response)
        return result


# provider -> (sync interceptor, aio interceptor), for the provider in force
_interceptors: tuple[Any, Any, Any] = (None, None, None)


def _grpc_interceptors(provider: Any) -> tuple[Any, Any]:
    global _interceptors
    if _interceptors[0] is not provider:
        from opentelemetry.instrumentation.grpc import aio_server_interceptor, server_interceptor

        _interceptors = (
            provider,
            server_interceptor(tracer_provider=provider),  # type: ignore[no-untyped-call]
            aio_server_interceptor(tracer_provider=provider),  # type: ignore[no-untyped-call]
        )
    return _interceptors[1], _interceptors[2]


def grpc_server(handler: Handler, details: Any) -> Handler:
    """A sync gRPC method handler (the governed one) with OTel's server span around it."""
    provider = spans.tracer_provider()
    if provider is None or handler is None:
        return handler
    interceptor = _grpc_interceptors(provider)[0]
    traced: Handler = interceptor.intercept_service(lambda _details: handler, details)
    return traced


async def grpc_aio_server(handler: Handler, details: Any) -> Handler:
    """:func:`grpc_server` for an async handler of a ``grpc.aio`` server."""
    provider = spans.tracer_provider()
    if provider is None or handler is None:
        return handler
    interceptor = _grpc_interceptors(provider)[1]

    async def continuation(_details: Any) -> Any:
        return handler

    traced: Handler = await interceptor.intercept_service(continuation, details)
    return traced
