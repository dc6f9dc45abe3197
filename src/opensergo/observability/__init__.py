"""Observability of governance: OpenTelemetry metrics and span events from the SDK.

* :func:`enable_metrics`: export the engine's metrics over OTLP (to the control plane by
  default) or into your own MeterProvider;
* :class:`GovernanceMetrics`: the instruments themselves, for any MeterProvider;
* :func:`record_block`: add the ``opensergo.block`` event to the current span;
* :mod:`.names`: the instrument and attribute names the control plane understands.
"""

from opensergo.observability import names
from opensergo.observability.metrics import GovernanceMetrics, record_block
from opensergo.observability.setup import MetricsHandle, enable_metrics

__all__ = ["GovernanceMetrics", "MetricsHandle", "enable_metrics", "names", "record_block"]
