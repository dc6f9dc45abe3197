"""Build OTLP export requests by hand, as an SDK's exporter would send them."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms_pb
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from opensergo.observability import names

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
S = 1_000_000_000


def kv(attrs: dict[str, str]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v)) for k, v in attrs.items()]


def request(
    metrics: Sequence[metrics_pb2.Metric],
    app: str = "demo",
    namespace: str | None = "default",
    instance: str = "i-1",
    extra: dict[str, str] | None = None,
) -> ms_pb.ExportMetricsServiceRequest:
    attrs = {names.SERVICE_NAME: app, names.SERVICE_INSTANCE_ID: instance, **(extra or {})}
    if namespace is not None:
        attrs[names.SERVICE_NAMESPACE] = namespace
    rm = metrics_pb2.ResourceMetrics()
    rm.resource.attributes.extend(kv(attrs))
    rm.scope_metrics.add().metrics.extend(metrics)
    return ms_pb.ExportMetricsServiceRequest(resource_metrics=[rm])


def counter(
    name: str,
    points: Sequence[tuple[dict[str, str], float]],
    start: float,
    time: float,
    temporality: int = CUMULATIVE,
) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=name)
    m.sum.aggregation_temporality = temporality
    m.sum.is_monotonic = True
    for attrs, value in points:
        dp = m.sum.data_points.add(
            start_time_unix_nano=int(start * S), time_unix_nano=int(time * S), as_int=int(value)
        )
        dp.attributes.extend(kv(attrs))
    return m


def gauge(name: str, points: Sequence[tuple[dict[str, str], float]], time: float) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=name)
    for attrs, value in points:
        dp = m.gauge.data_points.add(time_unix_nano=int(time * S), as_double=value)
        dp.attributes.extend(kv(attrs))
    return m


def histogram(
    attrs: dict[str, str],
    counts: Sequence[int],
    bounds: Sequence[float],
    total: float,
    start: float,
    time: float,
    temporality: int = CUMULATIVE,
) -> metrics_pb2.Metric:
    m = metrics_pb2.Metric(name=names.DURATION)
    m.histogram.aggregation_temporality = temporality
    hp = m.histogram.data_points.add(
        start_time_unix_nano=int(start * S),
        time_unix_nano=int(time * S),
        count=sum(counts),
        sum=total,
        bucket_counts=list(counts),
        explicit_bounds=list(bounds),
    )
    hp.attributes.extend(kv(attrs))
    return m


def res(resource: str, **more: str) -> dict[str, str]:
    return {names.RESOURCE: resource, **more}
