"""Client spans from OpenTelemetry's maintained instrumentations: httpx, requests and gRPC.

Each instrumentor patches its library process-wide (what ``opentelemetry-instrument`` does), so
every client gets spans with the semantic conventions and injects ``traceparent`` and ``baggage``
(the lane travels in baggage) on every outbound call, governed or not. A library that is not
installed, or whose instrumentation package is not, is skipped. The OpenSergo SDK's own calls to
the control plane and the OTLP exports are filtered out, so they make no spans.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["LIBRARIES", "instrument_clients", "uninstrument_clients"]

# gRPC services of the SDK itself (subscriptions, metadata, tokens) and of OTLP export.
_INTERNAL_SERVICES = ("io.opensergo.", "opensergo.", "opentelemetry.proto.")


def _grpc_filter() -> Any:
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(filters.any_of(*(filters.service_prefix(p) for p in _INTERNAL_SERVICES)))


def _httpx(provider: Any) -> list[Any]:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    return [(HTTPXClientInstrumentor(), {"tracer_provider": provider})]


def _requests(provider: Any) -> list[Any]:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    return [(RequestsInstrumentor(), {"tracer_provider": provider})]


def _grpc(provider: Any) -> list[Any]:
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcInstrumentorClient

    options = {"tracer_provider": provider}
    return [
        (GrpcInstrumentorClient(filter_=_grpc_filter()), options),  # type: ignore[no-untyped-call]
        (GrpcAioInstrumentorClient(filter_=_grpc_filter()), options),  # type: ignore[no-untyped-call]
    ]


LIBRARIES: dict[str, tuple[str, Callable[[Any], list[Any]]]] = {
    "httpx": ("opentelemetry.instrumentation.httpx", _httpx),
    "requests": ("opentelemetry.instrumentation.requests", _requests),
    "grpc": ("opentelemetry.instrumentation.grpc", _grpc),
}
"""Library -> (its instrumentation module, the instrumentors to apply)."""

_applied: list[Any] = []


def instrument_clients(provider: Any = None, libraries: tuple[str, ...] | None = None) -> list[str]:
    """Instrument the client libraries that are installed, with spans from ``provider`` (None:
    the global provider); returns the names instrumented."""
    done = []
    for name, (module, instrumentors) in LIBRARIES.items():
        if libraries is not None and name not in libraries:
            continue
        if importlib.util.find_spec(name) is None or importlib.util.find_spec(module) is None:
            continue
        try:
            for instrumentor, options in instrumentors(provider):
                if not instrumentor.is_instrumented_by_opentelemetry:
                    instrumentor.instrument(**options)
                    _applied.append(instrumentor)
        except Exception:  # a version mismatch must not stop the application
            log.warning("cannot instrument %s for tracing", name, exc_info=True)
            continue
        done.append(name)
    return done


def uninstrument_clients() -> None:
    """Undo :func:`instrument_clients` (tests)."""
    while _applied:
        instrumentor = _applied.pop()
        try:
            instrumentor.uninstrument()
        except Exception:  # pragma: no cover - best effort
            log.debug("uninstrument failed", exc_info=True)
    importlib.invalidate_caches()
