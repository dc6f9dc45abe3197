"""The HTTP application: the REST API (:mod:`.rest`), the dashboard (:mod:`.dashboard`,
:mod:`.sessions`, :mod:`.charts`) and auth (:mod:`.auth`) over one :class:`ApiContext`, behind
the request guard (:mod:`.guards`: Host names, body size)."""

from __future__ import annotations

from fastapi import FastAPI

from opensergo import __version__
from opensergo.controlplane.api import charts, contracts, dashboard, rest, sessions, traces
from opensergo.controlplane.api.auth import AuthConfig, AuthMiddleware
from opensergo.controlplane.api.context import ApiContext
from opensergo.controlplane.api.errors import EXCEPTION_HANDLERS
from opensergo.controlplane.api.guards import HostPolicy, RequestGuard
from opensergo.controlplane.limits import Limits
from opensergo.controlplane.metadata import MetadataRegistry
from opensergo.controlplane.metrics.history import MetricsHistory
from opensergo.controlplane.metrics.prometheus import ControlPlaneMetrics
from opensergo.controlplane.metrics.store import MetricStore
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import Store
from opensergo.controlplane.traces.store import TraceStore
from opensergo.controlplane.transport import TransportService


def create_app(
    store: Store,
    snapshots: SnapshotCache,
    transport: TransportService,
    registry: MetadataRegistry,
    replica_id: str = "",
    *,
    auth: AuthConfig | None = None,
    metric_store: MetricStore | None = None,
    history: MetricsHistory | None = None,
    prometheus: ControlPlaneMetrics | None = None,
    limits: Limits | None = None,
    hosts: HostPolicy | None = None,
    trace_store: TraceStore | None = None,
) -> FastAPI:
    """The HTTP API; ``auth`` None means no auth middleware (every request has every role);
    ``hosts`` None means no Host check (in-process tests; the control plane always passes one)."""
    limits = limits or Limits()
    app = FastAPI(
        title="OpenSergo control plane",
        version=__version__,
        description="Governance rules (Kubernetes-style resources), connected clients and reported apps.",
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.context = ApiContext(
        store, snapshots, transport, registry, replica_id, auth, metric_store, history, prometheus,
        limits, trace_store,
    )  # fmt: skip
    if auth is not None:
        app.add_middleware(AuthMiddleware, config=auth)
    # Added last, so it runs first: nothing else sees a foreign Host or an oversized body.
    app.add_middleware(
        RequestGuard, hosts=hosts or HostPolicy.anything(), max_body_bytes=limits.parser.max_bytes
    )
    app.include_router(rest.router)
    app.include_router(dashboard.router)
    app.mount("/ui", dashboard.UiStatic(), name="ui")
    app.include_router(sessions.router)
    app.include_router(charts.router)
    app.include_router(traces.router)
    app.include_router(contracts.router)
    return app
