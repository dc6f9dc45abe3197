"""SDK-side OpenTelemetry: instruments from engine state, the observer hook, block span events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan

from opensergo.governance import BlockedError, Engine, ManualClock, RateLimitedError, guard, load_rules
from opensergo.observability import GovernanceMetrics, enable_metrics, names, record_block
from opensergo.observability.export import bootstrap_endpoint as _bootstrap_endpoint

pytestmark = pytest.mark.unit

RULES = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: rl, labels: {app: demo}}
spec: {threshold: 2, statDuration: 1s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: CircuitBreakerStrategy
metadata: {name: cb, labels: {app: demo}}
spec:
  strategy: ErrorRequestRatio
  triggerRatio: "50%"
  statDuration: 1s
  recoveryTimeout: 5s
  minRequestAmount: 1
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: rule, labels: {app: demo}}
spec:
  targets: [{targetResourceName: "GET:/a"}]
  strategies: [{name: rl, kind: RateLimitStrategy}, {name: cb, kind: CircuitBreakerStrategy}]
"""


def collect(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = (point.count, point.sum)
                    out.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return out


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def engine() -> Iterator[Engine]:
    e = Engine(clock=ManualClock())
    load_rules(RULES, app="demo", engine=e)
    yield e
    e.close()


def test_engine_state_is_observed(engine: Engine, reader: InMemoryMetricReader) -> None:
    metrics = GovernanceMetrics(engine, MeterProvider(metric_readers=[reader]), hook=False)
    for _ in range(5):
        try:
            with guard("GET:/a", engine=engine):
                pass
        except BlockedError:
            pass
    data = collect(reader)
    assert data[names.BLOCKED] == [({names.RESOURCE: "GET:/a", names.RULE: "rule", names.STRATEGY: "rl"}, 3)]
    assert data[names.BREAKER_STATE] == [({names.RESOURCE: "GET:/a", names.STRATEGY: "cb"}, 0)]
    assert data[names.CONCURRENCY] == [({names.RESOURCE: "GET:/a"}, 0)]
    assert not metrics.hooked


class HookedEngine:
    """An engine with the observer hook (``Engine.set_observer``), driven by hand."""

    def __init__(self) -> None:
        self.observer: Any = None
        self.resources: tuple[str, ...] = ("GET:/b",)

    def set_observer(self, observer: Any) -> None:
        self.observer = observer

    def block_counts(self) -> dict[tuple[str, str, str], int]:
        return {}

    def breaker_states(self) -> dict[tuple[str, str], int]:
        return {}

    def in_flight(self, resource: str) -> int:
        return 2


def test_observer_hook_records_passes_errors_rt_and_block_events(reader: InMemoryMetricReader) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("test")
    engine = HookedEngine()
    metrics = GovernanceMetrics(engine, MeterProvider(metric_readers=[reader]))  # type: ignore[arg-type]
    assert metrics.hooked and engine.observer is metrics
    for rt_ms, error in ((2, False), (40, True), (3, False)):
        engine.observer.on_pass("GET:/b")
        engine.observer.on_complete("GET:/b", rt_ms * 1_000_000, error)
    with tracer.start_as_current_span("request"):
        engine.observer.on_block(RateLimitedError("GET:/b", "rule", "rl", detail="3 passed"))
    metrics.flush()  # response times reach the histogram from the flusher thread
    data = collect(reader)
    assert data[names.PASSED] == [({names.RESOURCE: "GET:/b"}, 3)]
    assert data[names.ERRORS] == [({names.RESOURCE: "GET:/b"}, 1)]
    assert data[names.DURATION] == [({names.RESOURCE: "GET:/b"}, (3, 45.0))]
    assert data[names.CONCURRENCY] == [({names.RESOURCE: "GET:/b"}, 2)]
    [span] = spans.get_finished_spans()
    [event] = span.events
    assert event.name == names.BLOCK_EVENT
    assert event.attributes is not None
    assert (
        event.attributes[names.STRATEGY] == "rl"
        and event.attributes[names.STRATEGY_KIND] == "RateLimitStrategy"
    )
    metrics.close()
    assert engine.observer is None


def test_real_engine_hook(engine: Engine, reader: InMemoryMetricReader) -> None:
    """Through the engine's observer hook, passes and RT come from real guarded requests."""
    metrics = GovernanceMetrics(engine, MeterProvider(metric_readers=[reader]))
    for _ in range(3):
        try:
            with guard("GET:/a", engine=engine):
                pass
        except BlockedError:
            pass
    metrics.flush()
    data = collect(reader)
    assert data[names.PASSED] == [({names.RESOURCE: "GET:/a"}, 2)]
    assert data[names.DURATION][0][1][0] == 2
    metrics.close()


class SpySpan(NonRecordingSpan):
    """A span that keeps every event it is given, and says whether it records."""

    def __init__(self, recording: bool) -> None:
        super().__init__(INVALID_SPAN_CONTEXT)
        self.recording = recording
        self.added: list[tuple[str, dict[str, Any]]] = []

    def is_recording(self) -> bool:
        return self.recording

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        self.added.append((name, dict(attributes or {})))


def test_record_block_without_a_recording_span_is_a_no_op() -> None:
    error = RateLimitedError("GET:/x", "rule", "rl")
    record_block(error)  # no span at all: nothing to record on, and no error
    idle = SpySpan(recording=False)
    with trace.use_span(idle):
        record_block(error)
    assert idle.added == []  # a span that does not record is not given the event
    live = SpySpan(recording=True)
    with trace.use_span(live):
        record_block(error)
    [(name, attributes)] = live.added
    assert (name, attributes[names.STRATEGY], attributes[names.RESOURCE]) == (
        names.BLOCK_EVENT,
        "rl",
        "GET:/x",
    )


class Capture(MetricExporter):
    def __init__(self) -> None:
        super().__init__(preferred_temporality={})
        self.batches: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def test_enable_metrics_sets_the_resource_the_control_plane_keys_by(engine: Engine) -> None:
    exporter = Capture()
    handle = enable_metrics(
        app="demo", namespace="team-a", engine=engine, exporter=exporter, interval=60, framework="fastapi"
    )
    try:
        with pytest.raises(BlockedError):
            for _ in range(3):
                with guard("GET:/a", engine=engine):
                    pass
        assert handle.force_flush()
        attrs = dict(exporter.batches[-1].resource_metrics[0].resource.attributes)
        assert attrs[names.SERVICE_NAME] == "demo"
        assert attrs[names.SERVICE_NAMESPACE] == "team-a"
        assert attrs[names.FRAMEWORK] == "fastapi"
        assert attrs[names.SDK_LANGUAGE] == "python"
        assert names.SERVICE_INSTANCE_ID in attrs
        # The control plane keys its charts by cumulative counters: every sum is exported as such.
        sums = [
            metric
            for scope in exporter.batches[-1].resource_metrics[0].scope_metrics
            for metric in scope.metrics
            if isinstance(metric.data, Sum)
        ]
        assert {metric.name for metric in sums} >= {names.PASSED, names.BLOCKED}
        assert {metric.data.aggregation_temporality for metric in sums} == {AggregationTemporality.CUMULATIVE}
    finally:
        handle.shutdown()
        handle.shutdown()  # idempotent


def test_enable_metrics_needs_an_app_and_an_endpoint(engine: Engine) -> None:
    with pytest.raises(ValueError, match="app is required"):
        enable_metrics(engine=engine, exporter=Capture(), environ={})
    with pytest.raises(ValueError, match="no metrics endpoint"):
        enable_metrics(app="demo", engine=engine, environ={})
    # Without endpoint= or OTEL_EXPORTER_OTLP_*: the control plane of the SDK's bootstrap.
    assert (
        _bootstrap_endpoint({"OPENSERGO_BOOTSTRAP_CONFIG": '{"endpoint": "10.0.0.1:10246"}'})
        == "10.0.0.1:10246"
    )
    assert _bootstrap_endpoint({"OPENSERGO_BOOTSTRAP_CONFIG": "{not json"}) is None
    mine = MeterProvider()
    own = enable_metrics(engine=engine, meter_provider=mine)
    assert own.provider is mine and not own.owns_provider
    own.shutdown()
