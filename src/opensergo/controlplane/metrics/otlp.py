"""The OTLP/gRPC MetricsService (``opentelemetry.proto.collector.metrics.v1``) on the gRPC port.

Any OpenTelemetry SDK's OTLP/gRPC metric exporter can point at the control plane's gRPC address;
the instruments named in :mod:`opensergo.common.metric_names` feed the dashboard charts, anything
else is accepted and ignored.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

from opensergo.controlplane.metrics.store import MetricStore

log = logging.getLogger(__name__)


class OtlpMetricsService(ms_grpc.MetricsServiceServicer):
    def __init__(self, store: MetricStore) -> None:
        self._store = store

    async def Export(
        self, request: ms_pb.ExportMetricsServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ms_pb.ExportMetricsServiceResponse:
        dropped_before = sum(self._store.stats.dropped.values())
        try:
            self._store.ingest(request)
        except Exception as err:  # a malformed export must not take the service down
            log.warning("cannot use an OTLP export from %s: %s", context.peer(), err)
            response = ms_pb.ExportMetricsServiceResponse()
            response.partial_success.error_message = f"not ingested: {err}"
            return response
        response = ms_pb.ExportMetricsServiceResponse()
        dropped = sum(self._store.stats.dropped.values()) - dropped_before
        if dropped:
            # OTLP's way to tell the exporter: these points were rejected and will not be retried.
            response.partial_success.rejected_data_points = dropped
            response.partial_success.error_message = (
                "data points dropped: non-finite values or beyond the control plane's limits"
                " (see opensergo_otlp_dropped_points_total)"
            )
        return response


def add_to_server(store: MetricStore, server: grpc.aio.Server) -> None:
    # The generated registration function is untyped.
    ms_grpc.add_MetricsServiceServicer_to_server(OtlpMetricsService(store), server)  # type: ignore[no-untyped-call]
