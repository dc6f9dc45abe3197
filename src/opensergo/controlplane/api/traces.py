"""The traces behind the dashboard's trace list and waterfall (``/api/v1/traces...``).

Each replica holds the traces of the data planes that export to it (as with metrics); a trace is
listed under every app it crossed. A caller sees the spans of the namespaces it may view.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from opensergo.controlplane.api.context import ApiContext, Caller, Context
from opensergo.controlplane.api.errors import bad_request, forbidden_namespace, not_found
from opensergo.controlplane.traces.store import TraceStore

router = APIRouter()

_NS_PER_S = 1_000_000_000


def _store(ctx: ApiContext) -> TraceStore:
    if ctx.traces is None:
        raise not_found("traces are not enabled on this control plane")
    return ctx.traces


@router.get("/api/v1/traces", tags=["traces"])
async def list_traces(
    ctx: Context,
    caller: Caller,
    namespace: str,
    app_name: str | None = Query(default=None, alias="app"),
    resource: str | None = None,
    blocked: bool | None = None,
    error: bool | None = None,
    start: float | None = Query(default=None, description="Unix seconds: traces that started at or after"),
    end: float | None = Query(default=None, description="Unix seconds: traces that started at or before"),
    limit: int = Query(default=50, ge=1, le=500),
) -> dict[str, Any]:
    """The newest traces of an app (or namespace), filtered; blocked=true finds the requests a
    rule refused (a span with ``opensergo.blocked``)."""
    if not caller.can_view(namespace):
        raise forbidden_namespace(caller.name, namespace)
    store = _store(ctx)
    found = store.traces(
        namespace,
        app_name,
        resource=resource,
        blocked=blocked,
        error=error,
        start_ns=int(start * _NS_PER_S) if start is not None else None,
        end_ns=int(end * _NS_PER_S) if end is not None else None,
        limit=limit,
    )
    return {
        "namespace": namespace,
        "app": app_name,
        "items": [t.summary() for t in found],
        "stored": {"traces": len(store), "spans": store.span_count, "maxSpans": store.max_spans},
    }


@router.get("/api/v1/traces/{trace_id}", tags=["traces"])
async def get_trace(ctx: Context, caller: Caller, trace_id: str) -> dict[str, Any]:
    """Every span of one trace (parents before children, by start time) and its log records."""
    if len(trace_id) != 32 or any(c not in "0123456789abcdefABCDEF" for c in trace_id):
        raise bad_request(f"{trace_id!r} is not 32 hex digits", "traceId")
    trace = _store(ctx).trace(trace_id)
    if trace is None or not trace.spans:
        raise not_found(f"trace {trace_id} is not held by this control plane (it keeps recent traces only)")
    spans = [s for s in trace.spans if caller.can_view(s.namespace)]
    if not spans:
        raise forbidden_namespace(caller.name, sorted(trace.apps)[0][0])
    spans.sort(key=lambda s: (s.start_ns, s.end_ns))
    logs = sorted(
        (entry for entry in trace.logs if caller.can_view(str(entry["namespace"]))), key=lambda e: e["time"]
    )
    start = min(s.start_ns for s in spans)
    return {
        "traceId": trace.trace_id,
        "start": start,
        "durationMs": round((max(s.end_ns for s in spans) - start) / 1e6, 3),
        "summary": trace.summary(),
        "spans": [s.to_json() for s in spans],
        "logs": logs,
        "hiddenSpans": len(trace.spans) - len(spans),
    }
