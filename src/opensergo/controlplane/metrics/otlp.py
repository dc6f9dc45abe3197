"""The OTLP/gRPC MetricsService (``opentelemetry.proto.collector.metrics.v1``) on the gRPC port.

Any OpenTelemetry SDK's OTLP/gRPC metric exporter can point at the control plane's gRPC address;
the instruments named in :mod:`opensergo.common.metric_names` feed the dashboard charts, anything
else is accepted and ignored.

An export is checked before anything in it is used: each resource's ``service.namespace``
(default "default") and ``service.name`` must be strings following Kubernetes' naming rules
(INVALID_ARGUMENT otherwise), and the caller must be a data plane (role agent or admin) in every
namespace the export names (PERMISSION_DENIED otherwise; see grpcauth.py). Resources without a
service name, or with OpenTelemetry's ``unknown_service`` default, are ignored as before.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc
from opentelemetry.proto.resource.v1 import resource_pb2

from opensergo.common import metric_names as names
from opensergo.common.kube_names import InvalidName, check_app, check_namespace
from opensergo.controlplane.grpcauth import OPEN, Action, GrpcAuth
from opensergo.controlplane.handlers import HandlerRegistry
from opensergo.controlplane.metrics.store import MetricStore

log = logging.getLogger(__name__)


class OtlpMetricsService(ms_grpc.MetricsServiceServicer):
    def __init__(self, store: MetricStore, access: GrpcAuth = OPEN) -> None:
        self._store = store
        self._access = access

    async def Export(
        self, request: ms_pb.ExportMetricsServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ms_pb.ExportMetricsServiceResponse:
        dropped_before = sum(self._store.stats.dropped.values())
        try:
            namespaces = {
                target[0]
                for rm in request.resource_metrics
                if (target := resource_target(rm.resource)) is not None
            }
        except InvalidName as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        caller = self._access.caller()
        for namespace in sorted(namespaces):
            denial = self._access.denial(caller, namespace, Action.EXPORT)
            if denial is not None:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, denial)
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


def resource_target(resource: resource_pb2.Resource) -> tuple[str, str] | None:
    """(namespace, app) a resource's metrics are stored under; None for one the store ignores.
    Raises InvalidName for a name Kubernetes would not accept, or one that is not a string."""
    values: dict[str, Any] = {}
    for kv in resource.attributes:
        if kv.key in (names.SERVICE_NAME, names.SERVICE_NAMESPACE):
            which = kv.value.WhichOneof("value")
            if which != "string_value":
                raise InvalidName(f"resource attribute {kv.key}: must be a string, not {which}")
            values[kv.key] = kv.value.string_value
    app = values.get(names.SERVICE_NAME, "")
    if not app or app.startswith("unknown_service"):
        return None
    namespace = values.get(names.SERVICE_NAMESPACE) or "default"
    check_namespace(namespace, names.SERVICE_NAMESPACE)
    check_app(app, names.SERVICE_NAME)
    return namespace, app


def add_to_server(store: MetricStore, server: HandlerRegistry, access: GrpcAuth = OPEN) -> None:
    # The generated registration function is untyped.
    ms_grpc.add_MetricsServiceServicer_to_server(OtlpMetricsService(store, access), server)  # type: ignore[no-untyped-call]
