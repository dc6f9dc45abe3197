"""OpenSergo's attributes on the spans of the maintained OpenTelemetry instrumentations.

The integrations call these at the points where they know something the instrumentation does
not (names in :mod:`opensergo.common.trace_names`):

* :func:`inbound`: the resource name, the matched route (``http.route``, and the span is renamed
  ``{method} {route}`` as the HTTP conventions want) and the lane, on the server span;
* :func:`blocked`: the rule, strategy and kind that refused the request;
* :func:`routed`: the TrafficRouter rule, destination, subset and instance of an outbound call.
  The client span of httpx and gRPC starts after routing (in the transport / sub-channel the
  route chose), so the attributes wait in a context variable until
  :func:`on_client_span_start` (called by the span processor that
  :func:`~opensergo.observability.enable_tracing` installs) sees the next client span to that
  address or method start.

Every function is a no-op (one flag test) while tracing is off, and sets nothing on spans that are
not recorded (not sampled).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from opensergo.common import trace_names as tn
from opensergo.governance.routing import lanes

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Span

    from opensergo.governance.errors import BlockedError
    from opensergo.governance.routing.model import Instance

__all__ = [
    "blocked",
    "enabled",
    "inbound",
    "on_client_span_start",
    "routed",
    "set_provider",
    "tracer_provider",
]

_on = False
_provider: trace.TracerProvider | None = None
# (key, attributes): route attributes waiting for the client span of an outbound call; key is the
# chosen address ("host:port") for HTTP or the full method for gRPC.
_pending: ContextVar[tuple[str, dict[str, Any]] | None] = ContextVar("opensergo_pending_route", default=None)


def enabled() -> bool:
    """True while the integrations create spans (:func:`opensergo.observability.enable_tracing`)."""
    return _on


def tracer_provider() -> trace.TracerProvider | None:
    """The provider the integrations create spans with (None: tracing is off)."""
    return _provider


def set_provider(provider: trace.TracerProvider | None) -> None:
    """Turn spans on with ``provider`` (None: off)."""
    global _on, _provider
    _provider = provider
    _on = provider is not None


def inbound(resource: str, method: str | None = None, route: str | None = None) -> None:
    """On the current (server) span: the resource, the route template and the lane."""
    if not _on:
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(tn.RESOURCE, resource)
    if route:
        span.set_attribute(tn.HTTP_ROUTE, route)
        if method:
            span.update_name(f"{method} {route}")
    lane = lanes.current_name()
    if lane:
        span.set_attribute(tn.LANE, lane)


def blocked(error: BlockedError) -> None:
    """On the current span: this request was refused, by which rule and strategy."""
    if not _on:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(
            {
                tn.BLOCKED: True,
                tn.RESOURCE: error.resource,
                tn.RULE: error.rule,
                tn.STRATEGY: error.strategy,
                tn.STRATEGY_KIND: error.kind,
            }
        )


def routed(instance: Instance, key: str, decision: tuple[str | None, str, str | None, bool] | None) -> None:
    """Route attributes for the client span of the call about to be made to ``instance``.

    ``key``: ``host:port`` the call goes to (HTTP) or its full method (gRPC). ``decision``:
    (rule, destination host, subset, fallback used) as routing recorded it.
    """
    if not _on:
        return
    attributes: dict[str, Any] = {tn.INSTANCE: instance.name}
    if decision is not None:
        rule, host, subset, fallback = decision
        attributes[tn.ROUTE_HOST] = host
        if rule:
            attributes[tn.ROUTE_RULE] = rule
        if subset:
            attributes[tn.SUBSET] = subset
        if fallback:
            attributes[tn.ROUTE_FALLBACK] = True
    span = trace.get_current_span()
    if span.is_recording() and getattr(span, "kind", None) is SpanKind.CLIENT:
        span.set_attributes(attributes)  # requests: the client span wraps the adapter
        return
    _pending.set((key, attributes))


def _matches(key: str, attributes: Any) -> bool:
    if attributes is None:
        return False
    service, method = attributes.get("rpc.service"), attributes.get("rpc.method")
    if service and method:
        return key == f"/{service}/{method}"
    for name in ("url.full", "http.url"):
        url = attributes.get(name)
        if isinstance(url, str) and f"//{key}/" in url + "/":
            return True
    host = attributes.get("server.address") or attributes.get("net.peer.name")
    port = attributes.get("server.port") or attributes.get("net.peer.port")
    return host is not None and (key == f"{host}:{port}" or key == host)


def on_client_span_start(span: Span) -> None:
    """For a span processor's ``on_start``: the lane on every client span, and the pending route
    attributes on the client span of the routed call."""
    if span.kind is not SpanKind.CLIENT:
        return
    lane = lanes.current_name()
    if lane:
        span.set_attribute(tn.LANE, lane)
    pending = _pending.get()
    if pending is not None and _matches(pending[0], span.attributes):
        span.set_attributes(pending[1])
        _pending.set(None)
