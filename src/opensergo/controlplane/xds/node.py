"""Who an xDS client is: its app, namespace and, for a sidecar, its ports (from the Node).

``opensergo sidecar`` writes these into the Envoy bootstrap's ``node.metadata``; a proxyless gRPC
bootstrap (``opensergo xds-bootstrap``) carries only ``app`` and ``namespace``. ``node.cluster``
is the app when ``metadata.app`` is absent, as in a hand-written Envoy bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

# node.metadata keys
APP = "app"
NAMESPACE = "namespace"
APP_PORT = "opensergo.io/app-port"
APP_HOST = "opensergo.io/app-host"
INBOUND_PORT = "opensergo.io/inbound-port"
INBOUND_HOST = "opensergo.io/inbound-host"
OUTBOUND_PORT = "opensergo.io/outbound-port"
ENGINE_PORT = "opensergo.io/engine-port"  # the sidecar's ext_proc service running the SDK engine


class NodeError(ValueError):
    """The node cannot be served (no app); sent back as the stream's error."""


def _port(metadata: dict[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    if value in (None, ""):
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise NodeError(f"node metadata {key}: not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise NodeError(f"node metadata {key}: {port} is not a port number")
    return port


@dataclass(frozen=True, slots=True)
class NodeProfile:
    """What selects a node's configuration; nodes with equal profiles get equal resources."""

    namespace: str
    app: str
    app_port: int | None = None
    app_host: str = "127.0.0.1"
    inbound_port: int | None = None
    inbound_host: str = "0.0.0.0"
    outbound_port: int | None = None
    engine_port: int | None = None
    control_plane_metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """Call metadata for Envoy's own calls to the control plane (the ratelimit filter's
    RateLimitService): the ``authorization`` the node's ADS stream presented, with auth on.
    Not printed: it holds the node's token."""

    @property
    def sidecar(self) -> bool:
        """An Envoy with listeners of its own (else a proxyless gRPC client naming its targets)."""
        return self.inbound_port is not None or self.outbound_port is not None

    @classmethod
    def from_node(cls, node: Any) -> NodeProfile:
        metadata: dict[str, Any] = (
            json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
        )
        app = str(metadata.get(APP) or node.cluster or "").strip()
        if not app:
            raise NodeError("the node names no app: set node.metadata.app (or node.cluster)")
        namespace = str(metadata.get(NAMESPACE) or "default").strip() or "default"
        inbound = _port(metadata, INBOUND_PORT)
        app_port = _port(metadata, APP_PORT)
        if inbound is not None and app_port is None:
            raise NodeError(f"node metadata {INBOUND_PORT} needs {APP_PORT} (where the app listens)")
        return cls(
            namespace=namespace,
            app=app,
            app_port=app_port,
            app_host=str(metadata.get(APP_HOST) or "127.0.0.1"),
            inbound_port=inbound,
            inbound_host=str(metadata.get(INBOUND_HOST) or "0.0.0.0"),
            outbound_port=_port(metadata, OUTBOUND_PORT),
            engine_port=_port(metadata, ENGINE_PORT),
        )
