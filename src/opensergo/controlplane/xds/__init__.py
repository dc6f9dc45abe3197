"""xDS for Envoy sidecars and proxyless gRPC: the ADS server, the translation of OpenSergo rules
into Envoy resources beside it, and the RateLimitService behind Global limits on Envoy."""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.tokens import GlobalLimits
from opensergo.controlplane.transport import TransportService
from opensergo.controlplane.xds.ratelimit import RateLimitService
from opensergo.controlplane.xds.server import AdsService

__all__ = ["AdsService", "RateLimitService", "add_to_server"]


def add_to_server(
    server: Any, snapshots: SnapshotCache, transport: TransportService, limits: GlobalLimits, identity: str
) -> AdsService:
    """Serve ADS and the RateLimitService on ``server`` (the control plane's gRPC server)."""
    ads = AdsService(snapshots, transport, identity)
    # The generated registration functions are untyped.
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)  # type: ignore[no-untyped-call]
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(RateLimitService(limits), server)  # type: ignore[no-untyped-call]
    return ads
