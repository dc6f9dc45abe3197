"""The control plane's Prometheus metrics (ACK/NACK counting, latencies) and the metrics history."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from opensergo.common.protocol import Encoding, SubscriptionKey
from opensergo.controlplane.metrics.history import MetricsHistory
from opensergo.controlplane.metrics.prometheus import ControlPlaneMetrics
from opensergo.controlplane.metrics.store import MetricStore
from opensergo.controlplane.snapshots import Snapshot
from opensergo.controlplane.transport import SubscriptionState
from opensergo.observability import names
from tests.unit.dashboard.otlp_builders import DELTA, counter, request, res

pytestmark = pytest.mark.unit

KEY = SubscriptionKey("default", "shop", "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy")


class FakeTransport:
    def __init__(self) -> None:
        self.sub = SubscriptionState(KEY, Encoding.NATIVE)
        self.client = SimpleNamespace(id="c1", connected_at=time.time() - 10, subscriptions={KEY: self.sub})
        self.connected_count = 1
        self.refused_streams = 0  # counters the transport keeps for /metrics
        self.refused_subscriptions = 0
        self.answer_listeners: list[Any] = []

    def add_answer_listener(self, listener: Any) -> None:
        self.answer_listeners.append(listener)

    def answer(self, version: int) -> None:
        for listener in self.answer_listeners:
            listener(self.client, self.sub, version)

    def clients(self, include_disconnected: bool = True) -> list[Any]:
        return [self.client]


class FakeSnapshots:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in:\n{text}")


def test_acks_nacks_and_latencies_are_counted() -> None:
    transport = FakeTransport()
    snapshots = FakeSnapshots()
    store = SimpleNamespace(revision=7)
    registry = SimpleNamespace(instances=lambda: [])
    prom = ControlPlaneMetrics(transport, snapshots, store, registry, MetricStore(60))  # type: ignore[arg-type]
    text = prom.render().decode()
    assert sample(text, "opensergo_connected_clients") == 1
    assert sample(text, "opensergo_store_revision") == 7
    assert 'opensergo_subscriptions{state="pending"} 1.0' in text

    # A rule change builds snapshot 12; the client ACKs it 50 ms after the push.
    snapshots.listeners[0](Snapshot(KEY, 12, ()))
    sub = transport.sub
    sub.pushed_version, sub.pushed_at = 12, time.time()
    sub.acked_version, sub.acked_at, sub.last_response = 12, sub.pushed_at + 0.05, "acked"
    transport.answer(12)
    text = prom.render().decode()
    assert sample(text, 'opensergo_acks_total{kind="RateLimitStrategy"}') == 1
    assert sample(text, "opensergo_ack_latency_seconds_count") == 1
    assert sample(text, "opensergo_ack_latency_seconds_sum") == pytest.approx(0.05, abs=0.001)
    assert sample(text, "opensergo_push_latency_seconds_count") == 1

    # Three NACKs, then a version-outdated answer (neither an ACK nor a NACK).
    sub.last_response = "nacked"
    for version in (13, 14, 15):
        transport.answer(version)
    sub.last_response = "outdated"
    transport.answer(15)
    assert prom.summary() == {"acks": 1.0, "nacks": 3.0}


def test_history_downsamples_and_reads_back(tmp_path: Path) -> None:
    store = MetricStore(retention=600, clock=lambda: 1000.0)
    for sec in range(940, 1000):
        store.ingest(
            request([counter(names.PASSED, [(res("GET:/a"), 2)], sec, sec + 1, DELTA)]), now=sec + 1.0
        )
    history = MetricsHistory(tmp_path / "h.db", resolution=30, retention=3600)
    history.open()
    rows = history.rows_for(store, 1000)
    assert len(rows) == 1 and rows[0][3] == 970 and rows[0][5] == pytest.approx(60.0)
    history.write(rows, now=1000.0)
    history.write(history.rows_for(store, 970), now=1000.0)
    items = history.query("default", "demo", None, 0, 2000)
    assert [(i["t"], i["passQps"]) for i in items] == [(940, 2.0), (970, 2.0)]
    assert history.query("default", "demo", "GET:/other", 0, 2000) == []
    # Rows older than the retention are dropped on the next write.
    history.write([], now=940 + 3600 + 1)
    assert [i["t"] for i in history.query("default", "demo", None, 0, 9999)] == [970]
    # Every period since the last write is due, even when the writer was late.
    history._last_flush = 930
    due = history.due_rows(store, now=990.0 + 2.0)  # periods end on multiples of 30 s
    assert [r[3] for r in due] == [930, 960]
    assert history.due_rows(store, now=1003.0) == []
    history.close()
    assert not MetricsHistory(None).enabled
    with pytest.raises(ValueError):
        MetricsHistory(None, resolution=0)
