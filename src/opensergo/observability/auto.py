"""Metrics, traces and logs turned on with governance (``enable_from_env``, ``opensergo-run``).

Each signal is on by default and exported over OTLP to the endpoint
:mod:`~opensergo.observability.export` picks (by default the control plane). Switches, read from
the environment:

============================  ====================================================
``OPENSERGO_METRICS=0``       no metrics export
``OPENSERGO_TRACES=0``        no spans (and no client instrumentation)
``OPENSERGO_LOGS=0``          no log export (logs go with traces: off with them too)
``OTEL_SDK_DISABLED=true``    none of the three (the OpenTelemetry switch)
``OTEL_TRACES_EXPORTER=none``  no spans; likewise ``OTEL_METRICS_EXPORTER``, ``OTEL_LOGS_EXPORTER``
============================  ====================================================

``0``, ``false``, ``no`` and ``off`` all switch off. Without the ``otel`` extra
(``opentelemetry-sdk`` and the OTLP exporter) nothing is exported and this is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opensergo.governance.faulttolerance.engine import Engine

__all__ = ["Signals", "enable_signals", "switched_on"]

log = logging.getLogger(__name__)

_OFF = ("0", "false", "no", "off")


@dataclass
class Signals:
    """What :func:`enable_signals` turned on (handles to flush or shut down)."""

    metrics: Any = None
    tracing: Any = None


def switched_on(signal: str, environ: Mapping[str, str]) -> bool:
    """Whether ``signal`` (metrics, traces, logs) is on by the environment switches."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower() == "none":
        return False
    if signal == "logs" and not switched_on("traces", environ):
        return False
    return environ.get(f"OPENSERGO_{signal.upper()}", "1").strip().lower() not in _OFF


def enable_signals(
    *,
    app: str,
    namespace: str,
    environ: Mapping[str, str],
    engine: Engine | None = None,
    framework: str | None = None,
) -> Signals:
    """Turn on the signals the environment leaves on; never raises (a failure is logged)."""
    signals = Signals()
    try:
        import opentelemetry.exporter.otlp.proto.grpc
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        log.info("OpenTelemetry export is off: install opensergo[otel] for metrics, traces and logs")
        return signals
    if switched_on("metrics", environ):
        try:
            from opensergo.observability.setup import enable_metrics

            signals.metrics = enable_metrics(
                app=app, namespace=namespace, engine=engine, framework=framework, environ=environ
            )
        except Exception:
            log.warning("cannot export metrics", exc_info=True)
    if switched_on("traces", environ):
        try:
            from opensergo.observability.tracing import enable_tracing

            signals.tracing = enable_tracing(
                app=app,
                namespace=namespace,
                framework=framework,
                logs=switched_on("logs", environ),
                environ=environ,
            )
        except Exception:
            log.warning("cannot export traces", exc_info=True)
    return signals
