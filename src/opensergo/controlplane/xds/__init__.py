"""xDS for Envoy sidecars and proxyless gRPC: the ADS server, the translation of OpenSergo rules
into Envoy resources beside it, and the RateLimitService behind Global limits on Envoy."""

from __future__ import annotations

from opensergo.controlplane.grpcauth import OPEN, GrpcAuth
from opensergo.controlplane.handlers import HandlerRegistry
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.tokens import GlobalLimits
from opensergo.controlplane.transport import TransportService
from opensergo.controlplane.xds.ratelimit import RateLimitService
from opensergo.controlplane.xds.server import AdsService

__all__ = ["AdsService", "RateLimitService", "add_to_server"]


def add_to_server(
    server: HandlerRegistry,
    snapshots: SnapshotCache,
    transport: TransportService,
    limits: GlobalLimits,
    identity: str,
    auth: GrpcAuth = OPEN,
) -> AdsService:
    """Serve ADS and the RateLimitService on ``server`` (the control plane's gRPC server), both
    restricted to the namespaces of the caller's credential when ``auth`` is on."""
    ads = AdsService(snapshots, transport, identity, auth)
    server.add_generic_rpc_handlers((ads.rpc_handler(), RateLimitService(limits, auth).rpc_handler()))
    return ads
