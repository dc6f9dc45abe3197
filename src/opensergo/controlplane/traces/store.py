"""Recent traces and log records, in memory and bounded, folded from OTLP exports.

Spans are grouped by trace id; each trace remembers the (namespace, app) of every service that
reported a span of it, so one trace is listed under each app it crossed. The store holds at most
``max_spans`` spans and log records together: when an export would exceed it, the traces first
seen longest ago are dropped whole (a trace is never kept half). Log records that carry a trace
id are kept with their trace (at most ``max_logs_per_trace``); the others in a ring per app.

What the dashboard asks:

* :meth:`TraceStore.traces`: summaries of the recent traces of an app, newest first, filtered by
  resource, by blocked (a span with ``opensergo.blocked``), by error, and by time;
* :meth:`TraceStore.trace`: every span of one trace (the waterfall) and its log records.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from opensergo.common import metric_names as names
from opensergo.common import trace_names as tn

__all__ = ["SpanRecord", "Trace", "TraceStore", "any_value"]

_KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "internal",
    trace_pb2.Span.SPAN_KIND_SERVER: "server",
    trace_pb2.Span.SPAN_KIND_CLIENT: "client",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "producer",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "consumer",
}
_STATUS = {0: "unset", 1: "ok", 2: "error"}
_MAX_ATTRIBUTE_CHARS = 2048  # a huge attribute (a SQL statement, a stack trace) is cut


def any_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as plain JSON data."""
    which = value.WhichOneof("value")
    if which == "string_value":
        text = value.string_value
        return text if len(text) <= _MAX_ATTRIBUTE_CHARS else text[:_MAX_ATTRIBUTE_CHARS] + "..."
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return None


def attributes(kvs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass(slots=True)
class SpanRecord:
    span_id: str
    parent_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    namespace: str
    app: str
    instance: str

    def to_json(self) -> dict[str, Any]:
        return {
            "spanId": self.span_id,
            "parentSpanId": self.parent_id,
            "name": self.name,
            "kind": self.kind,
            "start": self.start_ns,
            "end": self.end_ns,
            "durationMs": round((self.end_ns - self.start_ns) / 1e6, 3),
            "status": self.status,
            "statusMessage": self.status_message,
            "attributes": self.attributes,
            "events": self.events,
            "namespace": self.namespace,
            "app": self.app,
            "instance": self.instance,
        }


@dataclass
class Trace:
    trace_id: str
    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    apps: set[tuple[str, str]] = field(default_factory=set)
    received: float = 0.0

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for s in self.spans) if self.spans else 0

    @property
    def end_ns(self) -> int:
        return max(s.end_ns for s in self.spans) if self.spans else 0

    def root(self) -> SpanRecord | None:
        """The span without a parent in this trace (the earliest such), else the earliest span."""
        ids = {s.span_id for s in self.spans}
        roots = [s for s in self.spans if not s.parent_id or s.parent_id not in ids]
        candidates = roots or self.spans
        return min(candidates, key=lambda s: s.start_ns) if candidates else None

    def blocked(self) -> bool:
        return any(s.attributes.get(tn.BLOCKED) is True for s in self.spans)

    def resources(self) -> set[str]:
        return {str(s.attributes[tn.RESOURCE]) for s in self.spans if tn.RESOURCE in s.attributes}

    def summary(self) -> dict[str, Any]:
        root = self.root()
        blocked = [s for s in self.spans if s.attributes.get(tn.BLOCKED) is True]
        return {
            "traceId": self.trace_id,
            "name": root.name if root is not None else "",
            "rootApp": root.app if root is not None else "",
            "start": self.start_ns,
            "durationMs": round((self.end_ns - self.start_ns) / 1e6, 3),
            "spans": len(self.spans),
            "apps": sorted(f"{ns}/{app}" for ns, app in self.apps),
            "resources": sorted(self.resources()),
            "blocked": bool(blocked),
            "blockedBy": sorted({str(s.attributes.get(tn.RULE, "")) for s in blocked}),
            "error": any(s.status == "error" for s in self.spans),
            "lanes": sorted({str(s.attributes[tn.LANE]) for s in self.spans if tn.LANE in s.attributes}),
        }


class TraceStore:
    """Recent traces per app; see the module docstring."""

    def __init__(
        self, max_spans: int = 200_000, max_logs_per_trace: int = 200, max_untraced_logs: int = 1000
    ) -> None:
        self.max_spans = max_spans
        self.max_logs_per_trace = max_logs_per_trace
        self.max_untraced_logs = max_untraced_logs
        self._traces: OrderedDict[str, Trace] = OrderedDict()  # first seen first
        self._span_count = 0
        self._untraced: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self.spans_received = 0
        self.spans_dropped = 0
        self.logs_received = 0

    def __len__(self) -> int:
        return len(self._traces)

    @property
    def span_count(self) -> int:
        return self._span_count

    # -- intake ----------------------------------------------------------------------------------

    def ingest(self, request: trace_pb.ExportTraceServiceRequest, now: float | None = None) -> int:
        """Fold an export; returns the number of spans kept."""
        now = time.time() if now is None else now
        kept = 0
        for resource_spans in request.resource_spans:
            namespace, app, instance = _service_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans_received += 1
                    if len(span.trace_id) != 16 or len(span.span_id) != 8:
                        self.spans_dropped += 1
                        continue
                    trace_id = span.trace_id.hex()
                    trace = self._traces.get(trace_id)
                    if trace is None:
                        trace = self._traces[trace_id] = Trace(trace_id, received=now)
                    trace.spans.append(_span_record(span, namespace, app, instance))
                    trace.apps.add((namespace, app))
                    self._span_count += 1
                    kept += 1
        self._evict()
        return kept

    def ingest_logs(self, request: logs_pb.ExportLogsServiceRequest) -> int:
        kept = 0
        for resource_logs in request.resource_logs:
            namespace, app, instance = _service_of(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    self.logs_received += 1
                    entry = {
                        "time": record.time_unix_nano or record.observed_time_unix_nano,
                        "severity": record.severity_text or str(record.severity_number),
                        "body": any_value(record.body),
                        "attributes": attributes(record.attributes),
                        "spanId": record.span_id.hex() if record.span_id else "",
                        "namespace": namespace,
                        "app": app,
                        "instance": instance,
                    }
                    trace = self._traces.get(record.trace_id.hex()) if len(record.trace_id) == 16 else None
                    if trace is not None:
                        if len(trace.logs) < self.max_logs_per_trace:
                            trace.logs.append(entry)
                            self._span_count += 1
                            kept += 1
                        continue
                    if len(record.trace_id) == 16:  # its trace's spans come later (batches race)
                        trace = self._traces[record.trace_id.hex()] = Trace(
                            record.trace_id.hex(), logs=[entry], received=time.time()
                        )
                        self._span_count += 1
                        kept += 1
                        continue
                    ring = self._untraced.get((namespace, app))
                    if ring is None:
                        ring = self._untraced[(namespace, app)] = deque(maxlen=self.max_untraced_logs)
                    ring.append(entry)
                    kept += 1
        self._evict()
        return kept

    def _evict(self) -> None:
        while self._span_count > self.max_spans and self._traces:
            _, trace = self._traces.popitem(last=False)
            self._span_count -= len(trace.spans) + len(trace.logs)
            self.spans_dropped += len(trace.spans)

    # -- queries ---------------------------------------------------------------------------------

    def trace(self, trace_id: str) -> Trace | None:
        return self._traces.get(trace_id.lower())

    def traces(
        self,
        namespace: str | None = None,
        app: str | None = None,
        *,
        resource: str | None = None,
        blocked: bool | None = None,
        error: bool | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        limit: int = 50,
    ) -> list[Trace]:
        """The newest traces matching every filter given (a trace matches ``resource`` when one
        of its spans carries it; times compare with the trace's start)."""
        out: list[Trace] = []
        for trace in self._newest_first():
            if not trace.spans:
                continue
            if app is not None and not any(
                a == app and (namespace is None or ns == namespace) for ns, a in trace.apps
            ):
                continue
            if namespace is not None and app is None and not any(ns == namespace for ns, _ in trace.apps):
                continue
            if resource is not None and resource not in trace.resources():
                continue
            if blocked is not None and trace.blocked() != blocked:
                continue
            if error is not None and any(s.status == "error" for s in trace.spans) != error:
                continue
            start = trace.start_ns
            if start_ns is not None and start < start_ns:
                continue
            if end_ns is not None and start > end_ns:
                continue
            out.append(trace)
            if len(out) >= limit:
                break
        return out

    def logs(self, namespace: str, app: str, limit: int = 100) -> list[dict[str, Any]]:
        """Recent log records of an app that belong to no trace."""
        ring = self._untraced.get((namespace, app))
        return list(ring)[-limit:] if ring else []

    def apps(self) -> set[tuple[str, str]]:
        return {a for t in self._traces.values() for a in t.apps}

    def _newest_first(self) -> Iterator[Trace]:
        return reversed(list(self._traces.values()))


def _service_of(kvs: Iterable[common_pb2.KeyValue]) -> tuple[str, str, str]:
    attrs = attributes(kvs)
    return (
        str(attrs.get(names.SERVICE_NAMESPACE) or "default"),
        str(attrs.get(names.SERVICE_NAME) or "unknown_service"),
        str(attrs.get(names.SERVICE_INSTANCE_ID) or ""),
    )


def _span_record(span: trace_pb2.Span, namespace: str, app: str, instance: str) -> SpanRecord:
    return SpanRecord(
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex() if span.parent_span_id else "",
        name=span.name,
        kind=_KINDS.get(span.kind, "unspecified"),
        start_ns=span.start_time_unix_nano,
        end_ns=max(span.end_time_unix_nano, span.start_time_unix_nano),
        status=_STATUS.get(span.status.code, "unset"),
        status_message=span.status.message,
        attributes=attributes(span.attributes),
        events=[
            {"name": e.name, "time": e.time_unix_nano, "attributes": attributes(e.attributes)}
            for e in span.events
        ],
        namespace=namespace,
        app=app,
        instance=instance,
    )
