"""The metrics behind the dashboard's charts (``/api/v1/metrics/...``): live figures and
per-second series from the data planes' OTLP exports, and the downsampled on-disk history; and
``GET /metrics``, the control plane's own metrics in the Prometheus text format."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from opensergo.controlplane.api.context import ApiContext, Caller, Context
from opensergo.controlplane.api.errors import forbidden_namespace, not_found
from opensergo.controlplane.metrics.prometheus import CONTENT_TYPE
from opensergo.controlplane.metrics.store import MetricStore

router = APIRouter()

MAX_WINDOW = 2**31  # seconds; a window is clipped to 1..retention anyway
MAX_TIME = 2**40  # unix seconds (year 36812): beyond it a time is a mistake, not a query


def _metric_store(ctx: ApiContext) -> MetricStore:
    if ctx.metric_store is None:
        raise not_found("metrics are not enabled on this control plane")
    return ctx.metric_store


def _app_totals(
    store: MetricStore, key: tuple[str, str, str], start: int, end: int, entry: dict[str, Any]
) -> None:
    """Add one resource's figures over [start, end] to its app's ``entry``."""
    t = store.totals(key, start, end)
    entry["passQps"] += t["passQps"]
    entry["blockQps"] += t["blockQps"]
    entry["errorQps"] += t["errorQps"]
    entry["resources"] += 1
    entry["_rt"] += t["rtSum"]
    entry["_n"] += t["completed"]
    entry["breakersOpen"] += sum(b["instances"]["open"] for b in store.breakers(key))


def _finish(entry: dict[str, Any]) -> dict[str, Any]:
    n, rt = entry.pop("_n"), entry.pop("_rt")
    entry["avgRt"] = round(rt / n, 3) if n else None
    for k in ("passQps", "blockQps", "errorQps"):
        entry[k] = round(entry[k], 3)
    return entry


@router.get("/api/v1/metrics/apps", tags=["metrics"])
async def metrics_apps(
    ctx: Context, caller: Caller, window: int = Query(default=10, ge=-MAX_WINDOW, le=MAX_WINDOW)
) -> dict[str, Any]:
    """Per app (and resource): QPS, RT and breaker figures over the last ``window`` seconds."""
    store = _metric_store(ctx)
    end = int(store.now()) - 1
    start = end - max(1, min(window, store.retention))
    by_app: dict[tuple[str, str], dict[str, Any]] = {}
    for key in store.keys(None, None):
        if not caller.can_view(key[0]):
            continue
        entry = by_app.setdefault(
            (key[0], key[1]),
            {"namespace": key[0], "app": key[1], "passQps": 0.0, "blockQps": 0.0, "errorQps": 0.0,
             "resources": 0, "breakersOpen": 0, "_rt": 0.0, "_n": 0.0},
        )  # fmt: skip
        _app_totals(store, key, start, end, entry)
    items = [_finish(entry) for entry in by_app.values()]
    return {"window": window, "items": sorted(items, key=lambda e: (e["namespace"], e["app"]))}


@router.get("/api/v1/metrics/series", tags=["metrics"])
async def metrics_series(
    ctx: Context,
    caller: Caller,
    namespace: str,
    app_name: str = Query(alias="app"),
    resource: str | None = None,
    window: int = Query(default=60, ge=-MAX_WINDOW, le=MAX_WINDOW),
) -> dict[str, Any]:
    """Per-second points of each resource of an app for the last ``window`` seconds."""
    if not caller.can_view(namespace):
        raise forbidden_namespace(caller.name, namespace)
    store = _metric_store(ctx)
    now = store.now()
    end = int(now) - 1
    window = max(1, min(window, store.retention))
    start = end - window
    out = [
        {
            "resource": key[2],
            "points": store.points(key, start, end),
            "last10s": store.totals(key, end - 10, end),
            "concurrency": store.concurrency(key, now),
            "breakers": store.breakers(key, now),
        }
        for key in store.keys(namespace, app_name)
        if resource is None or key[2] == resource
    ]
    return {"namespace": namespace, "app": app_name, "start": start, "end": end, "resources": out}


@router.get("/api/v1/metrics/hotkeys", tags=["metrics"])
async def metrics_hot_keys(
    ctx: Context, caller: Caller, namespace: str, app_name: str = Query(alias="app")
) -> dict[str, Any]:
    """The app's governed caches' heaviest keys (opensergo.cache), live: per key the rate summed
    over the instances that reported it in the last 15 s, and whether any finds it hot."""
    if not caller.can_view(namespace):
        raise forbidden_namespace(caller.name, namespace)
    store = _metric_store(ctx)
    items = store.app_hot_keys(namespace, app_name)
    return {"namespace": namespace, "app": app_name, "time": store.now(), "items": items}


@router.get("/api/v1/metrics/history", tags=["metrics"])
async def metrics_history(
    ctx: Context,
    caller: Caller,
    namespace: str,
    app_name: str = Query(alias="app"),
    resource: str | None = None,
    start: int | None = Query(default=None, ge=0, le=MAX_TIME),
    end: int | None = Query(default=None, ge=0, le=MAX_TIME),
) -> dict[str, Any]:
    """Downsampled history (one point per resolution period) from the on-disk store."""
    if not caller.can_view(namespace):
        raise forbidden_namespace(caller.name, namespace)
    history = ctx.history
    end = end if end is not None else int(time.time())
    start = start if start is not None else end - 86400
    items = history.query(namespace, app_name, resource, start, end) if history is not None else []
    return {
        "namespace": namespace,
        "app": app_name,
        "resolution": history.resolution if history is not None else None,
        "items": items,
    }


@router.get("/metrics", tags=["meta"], include_in_schema=True)
async def prometheus_metrics(ctx: Context) -> Response:
    """The control plane's own metrics in the Prometheus text format."""
    if ctx.prometheus is None:
        raise not_found("Prometheus metrics are not enabled on this control plane")
    return Response(ctx.prometheus.render(), media_type=CONTENT_TYPE)
