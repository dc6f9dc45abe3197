"""The OTLP/gRPC TraceService and LogsService (``opentelemetry.proto.collector.{trace,logs}.v1``)
on the gRPC port, beside the MetricsService.

Any OpenTelemetry SDK's OTLP/gRPC span or log exporter can point at the control plane's gRPC
address. Exports are folded into the :class:`~.store.TraceStore` and, with ``--otlp-forward``,
passed on unchanged to a real backend. The servicers are registered with :func:`add_to_server`
exactly as the metrics one is, so whatever guards the gRPC port (TLS client certificates,
grpcauth's handler wrapper) guards them too. As for metrics, the caller must be a data plane (role
agent or admin) in every namespace an export's resources name (``service.namespace``, else
"default", as the store files them); otherwise the export ends PERMISSION_DENIED and nothing of it
is stored or forwarded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc
from opentelemetry.proto.resource.v1 import resource_pb2

from opensergo.common import metric_names as names
from opensergo.controlplane.grpcauth import OPEN, Action, GrpcAuth
from opensergo.controlplane.handlers import HandlerRegistry
from opensergo.controlplane.traces.forward import OtlpForwarder
from opensergo.controlplane.traces.store import TraceStore, attributes

log = logging.getLogger(__name__)


async def authorize(
    access: GrpcAuth,
    resources: Iterable[resource_pb2.Resource],
    action: Action,
    context: grpc.aio.ServicerContext[Any, Any],
) -> None:
    """End the call PERMISSION_DENIED unless the caller may export to every namespace named."""
    if not access.enabled:
        return
    namespaces = {str(attributes(r.attributes).get(names.SERVICE_NAMESPACE) or "default") for r in resources}
    caller = access.caller()
    for namespace in sorted(namespaces):
        denial = access.denial(caller, namespace, action)
        if denial is not None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, denial)


class OtlpTraceService(trace_grpc.TraceServiceServicer):
    def __init__(
        self, store: TraceStore, forwarder: OtlpForwarder | None = None, access: GrpcAuth = OPEN
    ) -> None:
        self._store = store
        self._forwarder = forwarder
        self._access = access

    async def Export(
        self, request: trace_pb.ExportTraceServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> trace_pb.ExportTraceServiceResponse:
        await authorize(
            self._access, (r.resource for r in request.resource_spans), Action.EXPORT_TRACES, context
        )
        if self._forwarder is not None:
            self._forwarder.traces(request)
        response = trace_pb.ExportTraceServiceResponse()
        try:
            received = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            kept = self._store.ingest(request)
        except Exception as err:  # a malformed export must not take the service down
            log.warning("cannot use an OTLP trace export from %s: %s", context.peer(), err)
            response.partial_success.error_message = f"not ingested: {err}"
            return response
        if kept < received:
            response.partial_success.rejected_spans = received - kept
            response.partial_success.error_message = "spans without a valid trace or span id"
        return response


class OtlpLogsService(logs_grpc.LogsServiceServicer):
    def __init__(
        self, store: TraceStore, forwarder: OtlpForwarder | None = None, access: GrpcAuth = OPEN
    ) -> None:
        self._store = store
        self._forwarder = forwarder
        self._access = access

    async def Export(
        self, request: logs_pb.ExportLogsServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> logs_pb.ExportLogsServiceResponse:
        await authorize(
            self._access, (r.resource for r in request.resource_logs), Action.EXPORT_LOGS, context
        )
        if self._forwarder is not None:
            self._forwarder.logs(request)
        try:
            self._store.ingest_logs(request)
        except Exception as err:
            log.warning("cannot use an OTLP log export from %s: %s", context.peer(), err)
            response = logs_pb.ExportLogsServiceResponse()
            response.partial_success.error_message = f"not ingested: {err}"
            return response
        return logs_pb.ExportLogsServiceResponse()


def add_to_server(
    store: TraceStore,
    server: HandlerRegistry,
    forwarder: OtlpForwarder | None = None,
    access: GrpcAuth = OPEN,
) -> None:
    # The generated registration functions are untyped.
    trace_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        OtlpTraceService(store, forwarder, access), server
    )
    logs_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        OtlpLogsService(store, forwarder, access), server
    )
