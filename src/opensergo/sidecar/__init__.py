"""``opensergo sidecar``: Envoy in front of any app, configured by the control plane over xDS."""

from opensergo.sidecar.bootstrap import SidecarNode, envoy_bootstrap, grpc_bootstrap
from opensergo.sidecar.runner import Sidecar, SidecarError, SidecarOptions, find_envoy

__all__ = [
    "Sidecar",
    "SidecarError",
    "SidecarNode",
    "SidecarOptions",
    "envoy_bootstrap",
    "find_envoy",
    "grpc_bootstrap",
]
