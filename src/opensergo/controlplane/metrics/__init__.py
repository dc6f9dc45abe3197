"""Metrics in the control plane: the OTLP receiver and per-second series behind the dashboard's
charts (:mod:`.store`, :mod:`.otlp`), their downsampled history (:mod:`.history`), and the
control plane's own Prometheus metrics (:mod:`.prometheus`)."""

from opensergo.controlplane.metrics.history import MetricsHistory
from opensergo.controlplane.metrics.store import MetricStore

__all__ = ["MetricStore", "MetricsHistory"]
