"""The four xDS resource types and one built set of them (what one node is sent).

Resources are written in Envoy's JSON form (the shape of its YAML docs, ``"@type"`` for typed
configs) and parsed once into protos here, so the translation modules read like Envoy config.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

# Importing the message modules registers their types for "@type" resolution in ParseDict.
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as _aggregate  # noqa: F401
from envoy.extensions.filters.http.adaptive_concurrency.v3 import (
    adaptive_concurrency_pb2 as _adaptive,  # noqa: F401
)
from envoy.extensions.filters.http.admission_control.v3 import (
    admission_control_pb2 as _admission,  # noqa: F401
)
from envoy.extensions.filters.http.custom_response.v3 import custom_response_pb2 as _custom  # noqa: F401
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2 as _ext_proc  # noqa: F401
from envoy.extensions.filters.http.fault.v3 import fault_pb2 as _fault  # noqa: F401
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2 as _local  # noqa: F401
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2 as _ratelimit  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2 as _router  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as _hcm,  # noqa: F401
)
from envoy.extensions.http.custom_response.local_response_policy.v3 import (
    local_response_policy_pb2 as _local_response,  # noqa: F401
)
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as _protocol  # noqa: F401
from envoy.type.matcher.v3 import http_inputs_pb2 as _inputs  # noqa: F401
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from opensergo.common.protocol import SubscriptionKey

PREFIX = "type.googleapis.com/"
LISTENER = PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
# The order a change is sent in: clusters and their endpoints before what refers to them.
SEND_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
# LDS and CDS are state-of-the-world sets; RDS and EDS are sent by name.
WILDCARD_TYPES = frozenset({LISTENER, CLUSTER})

_MESSAGES: dict[str, type[Message]] = {
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
}

SHORT_NAMES = {LISTENER: "LDS", ROUTE: "RDS", CLUSTER: "CDS", ENDPOINT: "EDS"}


def typed(type_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """A typed_config in JSON form: ``{"@type": type.googleapis.com/<type_name>, ...config}``."""
    return {"@type": PREFIX + type_name, **config}


def seconds(value: float) -> str:
    """A protobuf Duration in JSON form."""
    return f"{value:.3f}s"


def parse(type_url: str, config: dict[str, Any]) -> Message:
    """One resource from its JSON form; ValueError (json_format.ParseError) on a bad field."""
    return json_format.ParseDict(config, _MESSAGES[type_url]())


@dataclass
class Built:
    """What a node gets: per type, resource name -> packed resource, and the rule groups (with
    their versions) that the resources were built from, for ACK/NACK bookkeeping."""

    resources: dict[str, dict[str, any_pb2.Any]] = field(default_factory=dict)
    sources: dict[SubscriptionKey, int] = field(default_factory=dict)
    digests: dict[str, dict[str, bytes]] = field(default_factory=dict)

    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Listeners in JSON form, for :meth:`relocated`."""

    def add(self, type_url: str, name: str, config: dict[str, Any]) -> None:
        if type_url == LISTENER:
            self.templates[name] = config
        message = parse(type_url, config)
        packed = any_pb2.Any()
        packed.Pack(message, deterministic=True)
        self.resources.setdefault(type_url, {})[name] = packed
        self.digests.setdefault(type_url, {})[name] = hashlib.sha256(packed.value).digest()

    def relocated(self, addresses: dict[str, tuple[str, int]]) -> Built:
        """A copy whose listeners listen at ``addresses`` (name -> host, port); the other
        resources are shared, not copied."""
        out = Built(
            resources={t: (dict(r) if t == LISTENER else r) for t, r in self.resources.items()},
            sources=self.sources,
            digests={t: (dict(d) if t == LISTENER else d) for t, d in self.digests.items()},
        )
        for name, (host, port) in addresses.items():
            config = dict(self.templates[name])
            config["address"] = {"socket_address": {"address": host, "port_value": port}}
            out.add(LISTENER, name, config)
        return out

    def names(self, type_url: str) -> list[str]:
        return sorted(self.resources.get(type_url, {}))

    def digest(self, type_url: str, names: list[str] | None) -> bytes:
        """A fingerprint of what would be sent for ``names`` (None: every resource of the type)."""
        digests = self.digests.get(type_url, {})
        chosen = sorted(digests) if names is None else sorted(n for n in names if n in digests)
        hasher = hashlib.sha256()
        for name in chosen:
            hasher.update(name.encode() + b"\0" + digests[name])
        return hasher.digest()

    def select(self, type_url: str, names: list[str] | None) -> list[any_pb2.Any]:
        found = self.resources.get(type_url, {})
        chosen = sorted(found) if names is None else sorted(n for n in names if n in found)
        return [found[n] for n in chosen]
