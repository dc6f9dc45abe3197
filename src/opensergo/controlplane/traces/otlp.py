"""The OTLP/gRPC TraceService and LogsService (``opentelemetry.proto.collector.{trace,logs}.v1``)
on the gRPC port, beside the MetricsService.

Any OpenTelemetry SDK's OTLP/gRPC span or log exporter can point at the control plane's gRPC
address. Exports are folded into the :class:`~.store.TraceStore` and, with ``--otlp-forward``,
passed on unchanged to a real backend. The servicers are registered with :func:`add_to_server`
exactly as the metrics one is, so whatever guards the gRPC port (TLS client certificates,
interceptors) guards them too.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

from opensergo.controlplane.traces.forward import OtlpForwarder
from opensergo.controlplane.traces.store import TraceStore

log = logging.getLogger(__name__)


class OtlpTraceService(trace_grpc.TraceServiceServicer):
    def __init__(self, store: TraceStore, forwarder: OtlpForwarder | None = None) -> None:
        self._store = store
        self._forwarder = forwarder

    async def Export(
        self, request: trace_pb.ExportTraceServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> trace_pb.ExportTraceServiceResponse:
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
    def __init__(self, store: TraceStore, forwarder: OtlpForwarder | None = None) -> None:
        self._store = store
        self._forwarder = forwarder

    async def Export(
        self, request: logs_pb.ExportLogsServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> logs_pb.ExportLogsServiceResponse:
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


def add_to_server(store: TraceStore, server: grpc.aio.Server, forwarder: OtlpForwarder | None = None) -> None:
    # The generated registration functions are untyped.
    trace_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        OtlpTraceService(store, forwarder), server
    )
    logs_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        OtlpLogsService(store, forwarder), server
    )
