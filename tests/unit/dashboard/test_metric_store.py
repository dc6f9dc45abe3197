"""MetricStore: OTLP exports folded into per-second series (deltas, spreading, gauges, expiry)."""

from __future__ import annotations

import pytest

from opensergo.controlplane.metrics.store import BOUNDS, MetricStore, percentile, rebucket
from opensergo.observability import names
from tests.unit.dashboard.otlp_builders import DELTA, counter, gauge, histogram, request, res

pytestmark = pytest.mark.unit

KEY = ("default", "demo", "GET:/a")


def test_cumulative_counters_become_per_second_deltas() -> None:
    store = MetricStore(retention=60)
    start = 1000.0
    # A process that started 0.5 s ago: its first cumulative value is new traffic.
    store.ingest(request([counter(names.PASSED, [(res("GET:/a"), 5)], start, start + 0.5)]), now=2000.5)
    store.ingest(request([counter(names.PASSED, [(res("GET:/a"), 15)], start, start + 1.5)]), now=2001.5)
    store.ingest(request([counter(names.PASSED, [(res("GET:/a"), 15)], start, start + 2.5)]), now=2002.5)
    points = {p["t"]: p for p in store.points(KEY, 2000, 2003)}
    # 5 over [2000.0, 2000.5]; 10 over [2000.5, 2001.5] split evenly; nothing after.
    assert points[2000]["pass"] == pytest.approx(10.0)
    assert points[2001]["pass"] == pytest.approx(5.0)
    assert points[2002]["pass"] == 0
    totals = store.totals(KEY, 2000, 2003)
    assert totals["passed"] == pytest.approx(15.0)
    assert totals["passQps"] == pytest.approx(5.0)


def test_old_cumulative_value_is_a_baseline_not_a_spike() -> None:
    store = MetricStore(retention=60)
    # The control plane (re)started long after the SDK: the first value is history, not traffic.
    store.ingest(request([counter(names.PASSED, [(res("GET:/a"), 10_000)], 0.0, 500.0)]), now=3000.0)
    store.ingest(request([counter(names.PASSED, [(res("GET:/a"), 10_003)], 0.0, 501.0)]), now=3001.0)
    assert store.totals(KEY, 2990, 3002)["passed"] == pytest.approx(3.0)


def test_counter_reset_and_delta_temporality() -> None:
    store = MetricStore(retention=60)
    store.ingest(request([counter(names.BLOCKED, [(res("GET:/a"), 10)], 100.0, 100.5)]), now=10.5)
    # Same start time but the value went down: a reset; the new value is the delta.
    store.ingest(request([counter(names.BLOCKED, [(res("GET:/a"), 2)], 100.0, 101.5)]), now=11.5)
    assert store.totals(KEY, 10, 12)["blocked"] == pytest.approx(12.0)
    # Delta temporality: every value is the count of its interval.
    store.ingest(request([counter(names.ERRORS, [(res("GET:/a"), 4)], 101.5, 102.5, DELTA)]), now=12.5)
    store.ingest(request([counter(names.ERRORS, [(res("GET:/a"), 4)], 102.5, 103.5, DELTA)]), now=13.5)
    assert store.totals(KEY, 10, 14)["errors"] == pytest.approx(8.0)


def test_histogram_gives_average_and_p99() -> None:
    store = MetricStore(retention=60)
    bounds = list(BOUNDS)
    counts = [0] * (len(bounds) + 1)
    counts[bounds.index(10.0)] = 99  # (7.5, 10] ms
    counts[bounds.index(500.0)] = 1  # (300, 500] ms
    store.ingest(request([histogram(res("GET:/a"), counts, bounds, 99 * 9.0 + 400.0, 50.0, 50.5)]), now=70.5)
    point = store.points(KEY, 70, 71)[0]
    assert point["completed"] == pytest.approx(100.0)
    assert point["avgRt"] == pytest.approx(12.91, abs=0.01)
    assert 7.5 < point["p99Rt"] <= 10.0  # the 99th of 100 falls in the (7.5, 10] bucket


def test_foreign_histogram_bounds_are_rebucketed() -> None:
    # Another SDK's default bounds (0, 5, 10, 25, ...): counts move to the bucket of their upper bound.
    out = rebucket([0, 3, 2, 1], [0.0, 5.0, 10.0])
    assert out[BOUNDS.index(5.0)] == 3
    assert out[BOUNDS.index(10.0)] == 2
    assert out[-1] == 1  # above 10 ms: the overflow bucket
    assert percentile([0.0] * len(out), 0.99) is None


def test_gauges_sum_instances_and_count_open_breakers() -> None:
    store = MetricStore(retention=60)
    for instance, conc, state in (("i-1", 3, 1), ("i-2", 4, 0), ("i-3", 0, 2)):
        store.ingest(
            request(
                [
                    gauge(names.CONCURRENCY, [(res("GET:/a"), conc)], 100.0),
                    gauge(names.BREAKER_STATE, [(res("GET:/a", **{names.STRATEGY: "cb"}), state)], 100.0),
                ],
                instance=instance,
            ),
            now=500.2,
        )
    assert store.concurrency(KEY, now=500.5) == 7
    point = store.points(KEY, 500, 501)[0]
    assert point["concurrency"] == 7
    assert point["breakerOpen"] == 1
    assert point["breakerHalfOpen"] == 1
    [breaker] = store.breakers(KEY, now=500.5)
    assert breaker == {"strategy": "cb", "instances": {"closed": 1, "open": 1, "half-open": 1}}
    # Gauges of instances that stopped reporting no longer count.
    assert store.concurrency(KEY, now=600.0) == 0


def test_exporters_describe_the_app_and_unknown_services_are_ignored() -> None:
    store = MetricStore(retention=60)
    extra = {names.SDK_LANGUAGE: "python", names.FRAMEWORK: "fastapi", "telemetry.sdk.name": "opentelemetry"}
    store.ingest(request([counter(names.PASSED, [(res("GET:/a"), 1)], 1.0, 1.5)], extra=extra), now=10.0)
    store.ingest(
        request([counter(names.PASSED, [(res("GET:/a"), 1)], 1.0, 1.5)], app="unknown_service:python")
    )
    store.ingest(request([counter("http.server.duration", [(res("GET:/a"), 1)], 1.0, 1.5)], app="other"))
    assert store.app_info()[("default", "demo")] == {
        "language": "python",
        "framework": "fastapi",
        "sdk": "opentelemetry",
    }
    assert [k[1] for k in store.keys(None, None)] == ["demo"]
    assert store.stats.ignored == 1


def test_missing_namespace_means_default_and_series_expire() -> None:
    store = MetricStore(retention=30)
    store.ingest(request([counter(names.PASSED, [(res("GET:/a"), 2)], 1.0, 1.5)], namespace=None), now=100.0)
    assert store.keys() == [KEY]
    store.expire(now=120.0)
    assert store.keys() == [KEY]
    store.expire(now=200.0)
    assert store.keys() == [] and store.instances == {}


def test_ring_slots_are_reused_after_the_retention() -> None:
    store = MetricStore(retention=10)
    store.ingest(request([counter(names.PASSED, [(res("GET:/a"), 4)], 1.0, 1.5, DELTA)]), now=100.5)
    store.ingest(request([counter(names.PASSED, [(res("GET:/a"), 1)], 1.0, 1.5, DELTA)]), now=110.5)
    points = store.points(KEY, 100, 111)
    assert points[0]["pass"] == 0  # slot 100 % 10 was overwritten by second 110
    assert points[-1]["pass"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        MetricStore(retention=5)
