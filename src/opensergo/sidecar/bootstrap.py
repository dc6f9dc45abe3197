"""Bootstrap files: an Envoy sidecar's, and a proxyless gRPC client's (``GRPC_XDS_BOOTSTRAP``).

Both point at the control plane's gRPC port, where ADS is served, and carry the node metadata
that selects the rules (controlplane/xds/node.py). Envoy's bootstrap also declares the control
plane as the HTTP/2 cluster ``opensergo_control_plane``, which the inbound listener's ratelimit
filter uses for the RateLimitService (same port).

With a token (``opensergo sidecar --token``, for a control plane with auth on), Envoy's ADS
stream carries ``authorization: Bearer <token>`` as the gRPC service's ``initial_metadata``; the
control plane repeats it in the ratelimit filter's service (controlplane/xds/server.py). The
bootstrap then holds the token: it is written readable by its owner only (runner.py).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from opensergo.controlplane.xds import node as keys
from opensergo.controlplane.xds.build import CONTROL_PLANE_CLUSTER
from opensergo.controlplane.xds.resources import typed

PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def split_address(address: str, default_port: int = 10246) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``, or a bare host) -> (host, port)."""
    address = address.strip()
    for scheme in ("grpc://", "http://", "dns:///"):
        address = address.removeprefix(scheme)
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, default_port
    return host, int(port)


@dataclass
class SidecarNode:
    app: str
    namespace: str = "default"
    app_port: int | None = None
    app_host: str = "127.0.0.1"
    inbound_port: int | None = None
    inbound_host: str = "0.0.0.0"
    outbound_port: int | None = None
    engine_port: int | None = None
    node_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = {keys.APP: self.app, keys.NAMESPACE: self.namespace}
        for key, value in (
            (keys.APP_PORT, self.app_port),
            (keys.APP_HOST, self.app_host if self.app_port else None),
            (keys.INBOUND_PORT, self.inbound_port),
            (keys.INBOUND_HOST, self.inbound_host if self.inbound_port else None),
            (keys.OUTBOUND_PORT, self.outbound_port),
            (keys.ENGINE_PORT, self.engine_port),
        ):
            if value is not None:
                data[key] = str(value)
        if self.labels:
            data["labels"] = dict(self.labels)
        return data

    def identifier(self, role: str) -> str:
        return self.node_id or f"{role}~{self.app}~{socket.gethostname()}"


def envoy_bootstrap(
    node: SidecarNode, control_plane: str, admin_port: int, token: str | None = None
) -> dict[str, Any]:
    """The Envoy bootstrap (JSON form): ADS over plaintext gRPC to ``control_plane``, with
    ``token`` as the stream's bearer token when given."""
    host, port = split_address(control_plane)
    ads = {"ads": {}, "resource_api_version": "V3"}
    service: dict[str, Any] = {"envoy_grpc": {"cluster_name": CONTROL_PLANE_CLUSTER}}
    if token:
        service["initial_metadata"] = [{"key": "authorization", "value": f"Bearer {token}"}]
    return {
        "node": {"id": node.identifier("sidecar"), "cluster": node.app, "metadata": node.metadata()},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [service],
                "set_node_on_first_message_only": True,
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": CONTROL_PLANE_CLUSTER,
                    "type": "STRICT_DNS" if not _is_ip(host) else "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": CONTROL_PLANE_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": host, "port_value": port}
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                    "typed_extension_protocol_options": {
                        PROTOCOL_OPTIONS: typed(
                            PROTOCOL_OPTIONS, {"explicit_http_config": {"http2_protocol_options": {}}}
                        )
                    },
                }
            ]
        },
    }


def grpc_bootstrap(app: str, namespace: str, control_plane: str, node_id: str = "") -> dict[str, Any]:
    """A gRPC xDS bootstrap (gRFC A27) for ``xds:///<service>`` channels of ``app``."""
    host, port = split_address(control_plane)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "xds_servers": [
            {"server_uri": target, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}
        ],
        "node": {
            "id": node_id or f"proxyless~{app}~{socket.gethostname()}",
            "cluster": app,
            "metadata": {keys.APP: app, keys.NAMESPACE: namespace},
            # gRPC ignores endpoints of a locality it cannot compare with its own.
            "locality": {"zone": "default"},
        },
    }


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
