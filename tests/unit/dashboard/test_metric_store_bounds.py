"""MetricStore bounds: series per app and in total, instances per app, points per export and per
instance; non-finite or absurd values dropped; every drop counted by reason."""

from __future__ import annotations

import math

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest as ExportRequest,
)

from opensergo.controlplane.limits import Limits
from opensergo.controlplane.metrics.store import MAX_VALUE, MetricStore
from opensergo.observability import names
from tests.unit.dashboard.otlp_builders import DELTA, counter, gauge, histogram, request, res

pytestmark = pytest.mark.unit

NOW = 5000.0


def store(**limits: int) -> MetricStore:
    return MetricStore(retention=60, limits=Limits(**limits))  # type: ignore[arg-type]


def passed(n: int, app: str = "demo", instance: str = "i-1", value: float = 1.0) -> ExportRequest:
    points = [(res(f"GET:/{i}"), value) for i in range(n)]
    return request([counter(names.PASSED, points, NOW - 1, NOW, DELTA)], app=app, instance=instance)


def test_series_per_app_and_in_total() -> None:
    s = store(otlp_series_per_app=5, otlp_series_total=8)
    s.ingest(passed(7), now=NOW)
    assert len(s.keys("default", "demo")) == 5 and s.stats.dropped["app_series"] == 2
    s.ingest(passed(7, app="other"), now=NOW)
    assert len(s.series) == 8 and s.stats.dropped["total_series"] == 4
    # Existing series keep receiving data.
    s.ingest(passed(2), now=NOW + 1)
    assert s.totals(("default", "demo", "GET:/1"), int(NOW) - 2, int(NOW) + 2)["passed"] == pytest.approx(2)
    # Expiry frees the slots.
    s.expire(now=NOW + 120)
    s.ingest(passed(5, app="third"), now=NOW + 121)
    assert len(s.keys("default", "third")) == 5


def test_instances_per_app_and_points_per_export() -> None:
    s = store(otlp_instances_per_app=2, otlp_points_per_export=3)
    for i in range(3):
        s.ingest(passed(1, instance=f"i-{i}"), now=NOW)
    assert len(s.app_instances("default", "demo")) == 2 and s.stats.dropped["app_instances"] == 1
    used = s.ingest(passed(5, instance="i-0"), now=NOW)
    assert used == 3 and s.stats.dropped["export_points"] == 2


def test_non_finite_and_absurd_values_are_dropped() -> None:
    s = store()
    bad = [
        gauge(names.CONCURRENCY, [(res("GET:/a"), math.nan)], NOW),
        gauge(names.BREAKER_STATE, [(res("GET:/a", **{names.STRATEGY: "cb"}), math.inf)], NOW),
        counter(names.PASSED, [(res("GET:/a"), 0)], NOW - 1, NOW, DELTA),
        histogram(res("GET:/a"), [1, 1], [10.0], math.nan, NOW - 1, NOW, DELTA),
    ]
    bad[2].sum.data_points[0].as_double = MAX_VALUE * 10
    s.ingest(request(bad), now=NOW)
    assert s.stats.dropped["non_finite"] == 4 and not s.series
    assert s.breakers(("default", "demo", "GET:/a"), NOW) == []
