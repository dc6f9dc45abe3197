"""The control plane's trace store: grouping, per-app listing, filters, logs, bounds."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from opensergo.controlplane.traces.store import TraceStore

pytestmark = pytest.mark.unit


def kv(key: str, value: object) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(bool_value=value))
    if isinstance(value, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=str(value)))


def resource(app: str, namespace: str = "default") -> resource_pb2.Resource:
    return resource_pb2.Resource(
        attributes=[
            kv("service.name", app),
            kv("service.namespace", namespace),
            kv("service.instance.id", f"{app}-1"),
        ]
    )


def span(
    trace: int, span_id: int, parent: int = 0, start: int = 1_000, end: int = 2_000, **attributes: object
) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=f"span-{span_id}",
        kind=trace_pb2.Span.SPAN_KIND_SERVER if not parent else trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=[kv(k.replace("_", "."), v) for k, v in attributes.items()],
    )


def export(
    app: str, *spans: trace_pb2.Span, namespace: str = "default"
) -> trace_pb.ExportTraceServiceRequest:
    return trace_pb.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource(app, namespace), scope_spans=[trace_pb2.ScopeSpans(spans=spans)]
            )
        ]
    )


def test_spans_group_by_trace_across_apps() -> None:
    store = TraceStore()
    assert (
        store.ingest(export("front", span(1, 1, start=1_000_000, end=9_000_000, opensergo_resource="GET:/a")))
        == 1
    )
    assert (
        store.ingest(export("back", span(1, 2, parent=1, start=2_000_000, end=5_000_000), namespace="team"))
        == 1
    )
    trace = store.trace(f"{1:032x}")
    assert trace is not None and len(trace.spans) == 2
    assert trace.apps == {("default", "front"), ("team", "back")}
    summary = trace.summary()
    assert summary["name"] == "span-1" and summary["rootApp"] == "front"
    assert summary["durationMs"] == 8.0
    assert summary["apps"] == ["default/front", "team/back"] and summary["resources"] == ["GET:/a"]
    # Listed under both apps; namespace filters apply.
    assert [t.trace_id for t in store.traces("default", "front")] == [f"{1:032x}"]
    assert [t.trace_id for t in store.traces("team", "back")] == [f"{1:032x}"]
    assert store.traces("default", "back") == []


def test_filters_blocked_resource_error_and_time() -> None:
    store = TraceStore()
    store.ingest(export("api", span(1, 1, start=1_000_000_000, opensergo_resource="GET:/a")))
    store.ingest(
        export(
            "api",
            span(
                2,
                2,
                start=2_000_000_000,
                opensergo_resource="GET:/a",
                opensergo_blocked=True,
                opensergo_rule="r1",
            ),
        )
    )
    failing = span(3, 3, start=3_000_000_000, opensergo_resource="GET:/b")
    failing.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    store.ingest(export("api", failing))
    ids = lambda found: [t.trace_id[-1] for t in found]  # noqa: E731
    assert ids(store.traces("default", "api")) == ["3", "2", "1"]  # newest first
    assert ids(store.traces("default", "api", blocked=True)) == ["2"]
    assert store.traces("default", "api", blocked=True)[0].summary()["blockedBy"] == ["r1"]
    assert ids(store.traces("default", "api", blocked=False)) == ["3", "1"]
    assert ids(store.traces("default", "api", resource="GET:/a")) == ["2", "1"]
    assert ids(store.traces("default", "api", error=True)) == ["3"]
    assert ids(store.traces("default", "api", start_ns=1_500_000_000, end_ns=2_500_000_000)) == ["2"]
    assert ids(store.traces("default", "api", limit=1)) == ["3"]


def test_invalid_ids_are_rejected_and_counted() -> None:
    store = TraceStore()
    bad = trace_pb2.Span(trace_id=b"\x01", span_id=b"\x02", name="bad")
    assert store.ingest(export("api", bad, span(1, 1))) == 1
    assert store.spans_dropped == 1 and store.spans_received == 2


def test_oldest_traces_go_whole_when_full() -> None:
    store = TraceStore(max_spans=5)
    store.ingest(export("api", span(1, 1), span(1, 2, parent=1)))
    store.ingest(export("api", span(2, 3), span(2, 4, parent=3)))
    store.ingest(export("api", span(3, 5), span(3, 6, parent=5)))  # 6 > 5: trace 1 goes
    assert store.trace(f"{1:032x}") is None
    assert store.trace(f"{2:032x}") is not None and store.span_count == 4
    assert store.spans_dropped == 2


def test_logs_join_their_trace_or_their_app() -> None:
    store = TraceStore()
    store.ingest(export("api", span(7, 1)))
    records = [
        logs_pb2.LogRecord(
            time_unix_nano=5, severity_text="INFO", body=common_pb2.AnyValue(string_value="in the request"),
            trace_id=(7).to_bytes(16, "big"), span_id=(1).to_bytes(8, "big"),
        ),
        logs_pb2.LogRecord(
            time_unix_nano=6, severity_text="WARN", body=common_pb2.AnyValue(string_value="alone")
        ),
    ]  # fmt: skip
    request = logs_pb.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource("api"), scope_logs=[logs_pb2.ScopeLogs(log_records=records)]
            )
        ]
    )
    assert store.ingest_logs(request) == 2
    trace = store.trace(f"{7:032x}")
    assert trace is not None
    assert [(e["body"], e["spanId"]) for e in trace.logs] == [("in the request", f"{1:016x}")]
    assert [e["body"] for e in store.logs("default", "api")] == ["alone"]
