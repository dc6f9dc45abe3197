"""One call to export the engine's metrics: to the control plane, or through your own pipeline.

::

    from opensergo.observability import enable_metrics

    handle = enable_metrics(app="foo-app")          # OTLP/gRPC to the control plane, every second
    ...
    handle.shutdown()                               # flush and stop (also at interpreter exit)

With ``meter_provider=`` the instruments go to a MeterProvider you configured (any exporter:
OTLP to a Collector, Prometheus, console); nothing else is set up. Otherwise a MeterProvider is
built with the resource attributes the control plane keys its charts by (``service.name`` = app,
``service.namespace``, ``service.instance.id``, and ``opensergo.framework`` when given) and an
OTLP/gRPC exporter (``opentelemetry-exporter-otlp-proto-grpc``) whose endpoint is, in order:
``endpoint=``, ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``, then the
control plane from ``OPENSERGO_BOOTSTRAP_CONFIG`` / ``OPENSERGO_BOOTSTRAP``. The access token
(``token=``, else the bootstrap's ``token`` / ``tokenFile`` when the endpoint comes from it) is
sent as ``authorization: Bearer`` with every export; it is read once, when the exporter is built.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import MeterProvider

from opensergo.governance.faulttolerance.engine import Engine
from opensergo.observability.export import exporter_options, resource_attributes
from opensergo.observability.metrics import GovernanceMetrics

if TYPE_CHECKING:
    from opensergo.client.credentials import BearerToken


@dataclass
class MetricsHandle:
    metrics: GovernanceMetrics
    provider: MeterProvider
    owns_provider: bool
    _closed: bool = field(default=False, repr=False)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        self.metrics.flush()
        flush = getattr(self.provider, "force_flush", None)
        return bool(flush(timeout_millis)) if callable(flush) else True

    def shutdown(self) -> None:
        """Detach from the engine; flush and stop the MeterProvider if this call built it."""
        if self._closed:
            return
        self._closed = True
        self.metrics.close()
        if self.owns_provider:
            stop = getattr(self.provider, "shutdown", None)
            if callable(stop):
                stop()


def enable_metrics(
    *,
    app: str | None = None,
    namespace: str = "default",
    endpoint: str | None = None,
    interval: float = 1.0,
    engine: Engine | None = None,
    meter_provider: MeterProvider | None = None,
    instance_id: str | None = None,
    framework: str | None = None,
    exporter: Any = None,
    environ: Mapping[str, str] | None = None,
    token: str | BearerToken | None = None,
) -> MetricsHandle:
    """Export ``engine``'s metrics (default: the process-wide engine); see the module docstring.

    ``exporter`` replaces the OTLP exporter (any OTel ``MetricExporter``); ``interval`` is the
    export period in seconds (the dashboard's charts have one-second points).
    """
    if meter_provider is not None:
        return MetricsHandle(GovernanceMetrics(engine, meter_provider), meter_provider, False)

    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    env = os.environ if environ is None else environ
    attributes = resource_attributes(app, namespace, instance_id, framework, env)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(**exporter_options("metrics", endpoint, env, token))
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=max(100.0, interval * 1000))
    provider = SdkMeterProvider(resource=Resource.create(attributes), metric_readers=[reader])
    handle = MetricsHandle(GovernanceMetrics(engine, provider), provider, True)
    atexit.register(handle.shutdown)
    return handle
