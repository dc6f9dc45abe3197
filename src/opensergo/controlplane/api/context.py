"""What the HTTP handlers work with, as FastAPI dependencies.

:func:`~opensergo.controlplane.api.server.create_app` puts one :class:`ApiContext` in
``app.state``; handlers ask for it (``ctx: Context``) and for the caller (``caller: Caller``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from opensergo.controlplane.api.auth import AuthConfig, Principal, principal_of
from opensergo.controlplane.limits import Limits
from opensergo.controlplane.metadata import MetadataRegistry
from opensergo.controlplane.metrics.history import MetricsHistory
from opensergo.controlplane.metrics.prometheus import ControlPlaneMetrics
from opensergo.controlplane.metrics.store import MetricStore
from opensergo.controlplane.readmodels import RuleIndex
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import Store
from opensergo.controlplane.traces.store import TraceStore
from opensergo.controlplane.transport import TransportService


@dataclass
class ApiContext:
    store: Store
    snapshots: SnapshotCache
    transport: TransportService
    registry: MetadataRegistry
    replica_id: str = ""
    auth: AuthConfig | None = None  # None: no auth middleware (every request has every role)
    metric_store: MetricStore | None = None
    history: MetricsHistory | None = None
    prometheus: ControlPlaneMetrics | None = None
    limits: Limits = field(default_factory=Limits)
    traces: TraceStore | None = None
    rules: RuleIndex = field(init=False)

    def __post_init__(self) -> None:
        self.rules = RuleIndex(self.snapshots)


def api_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


def caller(request: Request) -> Principal:
    return principal_of(request.state)


Context = Annotated[ApiContext, Depends(api_context)]
Caller = Annotated[Principal, Depends(caller)]
