"""Observability of governance: OpenTelemetry metrics, traces and logs from the SDK.

* :func:`enable_metrics`: export the engine's metrics over OTLP (to the control plane by
  default) or into your own MeterProvider;
* :func:`enable_tracing`: server and client spans for every integration, with OpenSergo's
  attributes, exported with the logs over OTLP (needs the ``otel`` extra);
* :class:`GovernanceMetrics`: the instruments themselves, for any MeterProvider;
* :func:`record_block`: add the ``opensergo.block`` event to the current span;
* :mod:`.names`: the instrument and attribute names the control plane understands.

``enable_from_env`` and ``opensergo-run`` turn metrics, traces and logs on by default
(:mod:`.auto` lists the switches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opensergo.observability import names
from opensergo.observability.metrics import GovernanceMetrics, record_block
from opensergo.observability.setup import MetricsHandle, enable_metrics

if TYPE_CHECKING:
    from opensergo.observability.tracing import TracingHandle, enable_tracing

__all__ = [
    "GovernanceMetrics",
    "MetricsHandle",
    "TracingHandle",
    "enable_metrics",
    "enable_tracing",
    "names",
    "record_block",
]


def __getattr__(name: str) -> object:
    # The tracing module imports the OpenTelemetry SDK (the `otel` extra): only on first use.
    if name in ("enable_tracing", "TracingHandle"):
        from opensergo.observability import tracing

        return getattr(tracing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
