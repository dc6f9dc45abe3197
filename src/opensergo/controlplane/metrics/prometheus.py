"""Prometheus metrics of the control plane itself, served at ``GET /metrics``.

* ``opensergo_connected_clients``: open SubscribeConfig streams on this replica.
* ``opensergo_subscriptions{state}``: subscriptions by last answer (acked, nacked, pending, ...).
* ``opensergo_acks_total{kind}`` / ``opensergo_nacks_total{kind}``: answers received.
* ``opensergo_push_latency_seconds``: from a rule change (a new snapshot version of a group) to
  each subscribed client's ACK of that version: what an operator waits for after ``apply``.
* ``opensergo_ack_latency_seconds``: from writing a push to a stream to its ACK (network + SDK).
* ``opensergo_store_revision``, ``opensergo_instances``, ``opensergo_apps``, and
  ``opensergo_otlp_*`` for the metrics receiver.

ACKs and NACKs are counted as the transport records them (an answer listener), so a scrape or
a fan-out to 10,000 streams never scans every subscription.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from opensergo.common.protocol import SubscriptionKey
from opensergo.controlplane.metadata import MetadataRegistry
from opensergo.controlplane.metrics.store import MetricStore
from opensergo.controlplane.snapshots import Snapshot, SnapshotCache
from opensergo.controlplane.store.base import Store
from opensergo.controlplane.transport import ClientStream, SubscriptionState, TransportService

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_CREATED_KEPT = 20_000


def _short(kind: str) -> str:
    return kind.rsplit("/", 1)[-1]


class _Gauges(Collector):
    def __init__(self, owner: ControlPlaneMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        o = self._owner
        yield GaugeMetricFamily(
            "opensergo_connected_clients",
            "Open SubscribeConfig streams on this replica.",
            value=o.transport.connected_count,
        )
        states = GaugeMetricFamily(
            "opensergo_subscriptions", "Subscriptions of connected clients by last answer.", labels=["state"]
        )
        counts: dict[str, int] = {}
        for client in o.transport.clients(include_disconnected=False):
            for sub in client.subscriptions.values():
                counts[sub.last_response] = counts.get(sub.last_response, 0) + 1
        for state in ("acked", "nacked", "pending", "outdated", "rejected", "failed"):
            states.add_metric([state], counts.get(state, 0))
        yield states
        yield GaugeMetricFamily(
            "opensergo_store_revision", "Revision of the last store write.", value=o.store.revision
        )
        instances = o.registry.instances()
        yield GaugeMetricFamily(
            "opensergo_instances", "Instances registered through this replica.", value=len(instances)
        )
        yield GaugeMetricFamily(
            "opensergo_apps",
            "Apps with instances registered through this replica.",
            value=len({(i.namespace, i.app) for i in instances}),
        )
        if o.metric_store is not None:
            stats = o.metric_store.stats
            yield GaugeMetricFamily(
                "opensergo_otlp_export_requests", "OTLP metric exports received.", value=stats.requests
            )
            yield GaugeMetricFamily(
                "opensergo_otlp_data_points",
                "OTLP data points used for dashboard series.",
                value=stats.points,
            )
            yield GaugeMetricFamily(
                "opensergo_metric_series", "Dashboard series in memory.", value=len(o.metric_store.series)
            )
            dropped = CounterMetricFamily(
                "opensergo_otlp_dropped_points",
                "OTLP data points dropped: non-finite values, or beyond a limit (see docs/security.md).",
                labels=["reason"],
            )
            for reason, count in stats.dropped.items():
                dropped.add_metric([reason], count)
            yield dropped
        transport = o.transport
        yield CounterMetricFamily(
            "opensergo_streams_refused",
            "SubscribeConfig streams refused: too many open from one peer identity.",
            value=transport.refused_streams,
        )
        yield CounterMetricFamily(
            "opensergo_subscriptions_refused",
            "Subscriptions refused: beyond the limit per stream.",
            value=transport.refused_subscriptions,
        )


class ControlPlaneMetrics:
    """The registry behind ``/metrics`` and the poller that counts ACKs and NACKs."""

    def __init__(
        self,
        transport: TransportService,
        snapshots: SnapshotCache,
        store: Store,
        registry: MetadataRegistry,
        metric_store: MetricStore | None = None,
    ) -> None:
        self.transport = transport
        self.store = store
        self.registry = registry
        self.metric_store = metric_store
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series (noise)
        self.prometheus = CollectorRegistry(auto_describe=False)
        self.acks = Counter(
            "opensergo_acks", "ACKs received from data planes.", ["kind"], registry=self.prometheus
        )
        self.nacks = Counter(
            "opensergo_nacks", "NACKs received from data planes.", ["kind"], registry=self.prometheus
        )
        self.push_latency = Histogram(
            "opensergo_push_latency_seconds",
            "From a rule change (new snapshot version) to a subscribed client's ACK of it.",
            buckets=_LATENCY_BUCKETS,
            registry=self.prometheus,
        )
        self.ack_latency = Histogram(
            "opensergo_ack_latency_seconds",
            "From writing a push to a stream to the client's ACK of it.",
            buckets=_LATENCY_BUCKETS,
            registry=self.prometheus,
        )
        self.prometheus.register(_Gauges(self))
        # (group, version) -> when the snapshot was built
        self._created: OrderedDict[tuple[SubscriptionKey, int], float] = OrderedDict()
        snapshots.add_listener(self._on_snapshot)
        transport.add_answer_listener(self._on_answer)

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        self._created[(snapshot.key, snapshot.version)] = time.time()
        while len(self._created) > _CREATED_KEPT:
            self._created.popitem(last=False)

    def _on_answer(self, stream: ClientStream, sub: SubscriptionState, version: int) -> None:
        """Count one ACK or NACK as the transport records it (no scan of every stream)."""
        kind = _short(sub.key.kind)
        if sub.last_response == "nacked":
            self.nacks.labels(kind).inc()
            return
        if sub.last_response != "acked":
            return
        self.acks.labels(kind).inc()
        acked_at = sub.acked_at or time.time()
        if sub.pushed_at is not None and sub.pushed_version == version:
            self.ack_latency.observe(max(0.0, acked_at - sub.pushed_at))
        created = self._created.get((sub.key, version))
        # Only changes made while the client was connected measure propagation.
        if created is not None and created >= stream.connected_at:
            self.push_latency.observe(max(0.0, acked_at - created))

    def render(self) -> bytes:
        data: bytes = generate_latest(self.prometheus)
        return data

    def summary(self) -> dict[str, Any]:
        """The counters as plain numbers (for the dashboard's overview)."""
        total = {"acks": 0.0, "nacks": 0.0}
        for metric in self.prometheus.collect():
            if metric.name in ("opensergo_acks", "opensergo_nacks"):
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        total[metric.name.removeprefix("opensergo_")] += sample.value
        return total
