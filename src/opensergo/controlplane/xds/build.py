"""Everything one xDS node is sent, built from the snapshot cache.

A sidecar (``opensergo sidecar``) gets two listeners:

* ``inbound`` on its inbound port: the app's fault-tolerance rules (routes ``inbound``, clusters
  ``inbound|<app>...`` pointing at the app's port);
* ``outbound`` on 127.0.0.1:<outbound port>: one virtual host per service of the namespace
  (routes ``outbound``), with an EDS cluster per service subset.

A proxyless gRPC client names the services it dials (``xds:///<service>``): each gets an API
listener of that name and a route configuration of that name.

Built sets are memoized per (profile, requested listeners, cache revision): nodes with one
profile (every Envoy of one app) share one build per change.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.xds import inbound, outbound
from opensergo.controlplane.xds.node import NodeProfile
from opensergo.controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, Built, typed
from opensergo.controlplane.xds.view import RuleView

log = logging.getLogger(__name__)

INBOUND = "inbound"
OUTBOUND = "outbound"
CONTROL_PLANE_CLUSTER = "opensergo_control_plane"
"""The bootstrap's cluster for the control plane (ADS, and the RateLimitService on one port)."""

HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_MEMO_SIZE = 4096


def _hcm(stat_prefix: str, route_name: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
    return typed(
        HCM,
        {
            "stat_prefix": stat_prefix,
            "rds": {"route_config_name": route_name, "config_source": outbound.ADS},
            "http_filters": filters,
        },
    )


def _listener(name: str, host: str, port: int, hcm: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "address": {"socket_address": {"address": host, "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def build(cache: SnapshotCache, profile: NodeProfile, listeners: tuple[str, ...] = ()) -> Built:
    """The resources for ``profile``; ``listeners`` are the names a proxyless client asked for."""
    view = RuleView(cache)
    built = Built()
    if profile.sidecar:
        if (
            profile.inbound_port is not None
            and profile.app_port is not None
            and profile.engine_port is not None
        ):
            # The sidecar enforces the rules with the SDK engine (ext_proc): Envoy only forwards.
            _add_engine_inbound(built, profile)
        elif profile.inbound_port is not None and profile.app_port is not None:
            plan = inbound.plan(view, profile.namespace, profile.app)
            filters = inbound.http_filters(plan, CONTROL_PLANE_CLUSTER, profile.control_plane_metadata)
            built.add(
                LISTENER,
                INBOUND,
                _listener(
                    INBOUND, profile.inbound_host, profile.inbound_port, _hcm(INBOUND, INBOUND, filters)
                ),
            )
            built.add(
                ROUTE, INBOUND, inbound.route_config(view, profile.namespace, profile.app, plan, INBOUND)
            )
            for cluster in inbound.clusters(profile.app, profile.app_host, profile.app_port, plan):
                built.add(CLUSTER, cluster["name"], cluster)
        if profile.outbound_port is not None:
            out = outbound.Outbound(view, profile.namespace, grpc=False)
            hosts = [
                out.virtual_host(service, outbound.domains_of(service, profile.namespace))
                for service in view.services(profile.namespace)
            ]
            built.add(
                LISTENER,
                OUTBOUND,
                _listener(
                    OUTBOUND,
                    "127.0.0.1",
                    profile.outbound_port,
                    _hcm(OUTBOUND, OUTBOUND, outbound.hcm_filters(False)),
                ),
            )
            built.add(ROUTE, OUTBOUND, {"name": OUTBOUND, "virtual_hosts": hosts})
            _add_clusters(built, out)
    else:
        out = outbound.Outbound(view, profile.namespace, grpc=True)
        for name in listeners:
            service = name.rsplit(":", 1)[0] if name.rsplit(":", 1)[-1].isdigit() else name
            host = out.virtual_host(service, outbound.domains_of(service, profile.namespace))
            built.add(
                LISTENER,
                name,
                {
                    "name": name,
                    "api_listener": {"api_listener": _hcm(name, name, outbound.hcm_filters(True))},
                },
            )
            built.add(ROUTE, name, {"name": name, "virtual_hosts": [host]})
        _add_clusters(built, out)
    built.sources = dict(view.sources)
    return built


ENGINE_CLUSTER = "opensergo_engine"


def _add_engine_inbound(built: Built, profile: NodeProfile) -> None:
    assert (
        profile.inbound_port is not None and profile.app_port is not None and profile.engine_port is not None
    )
    ext_proc = {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": typed(
            "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            {
                "grpc_service": {"envoy_grpc": {"cluster_name": ENGINE_CLUSTER}},
                "failure_mode_allow": True,  # the SDK's rule when governance is unavailable: pass
                "processing_mode": {
                    "request_header_mode": "SEND",
                    "response_header_mode": "SEND",
                    "request_body_mode": "NONE",
                    "response_body_mode": "NONE",
                    "request_trailer_mode": "SKIP",
                    "response_trailer_mode": "SKIP",
                },
                # Throttling queues requests in the engine: give it the time it may take.
                "message_timeout": "30s",
            },
        ),
    }
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": typed("envoy.extensions.filters.http.router.v3.Router", {}),
    }
    built.add(
        LISTENER,
        INBOUND,
        _listener(
            INBOUND, profile.inbound_host, profile.inbound_port, _hcm(INBOUND, INBOUND, [ext_proc, router])
        ),
    )
    app_route = {
        "name": "app",
        "match": {"prefix": "/"},
        "route": {"cluster": inbound.app_cluster(profile.app), "timeout": "0s"},
    }
    built.add(
        ROUTE,
        INBOUND,
        {"name": INBOUND, "virtual_hosts": [{"name": profile.app, "domains": ["*"], "routes": [app_route]}]},
    )
    built.add(
        CLUSTER,
        inbound.app_cluster(profile.app),
        inbound.static_cluster(inbound.app_cluster(profile.app), profile.app_host, profile.app_port),
    )
    engine = inbound.static_cluster(ENGINE_CLUSTER, "127.0.0.1", profile.engine_port)
    engine["typed_extension_protocol_options"] = {
        PROTOCOL_OPTIONS: typed(PROTOCOL_OPTIONS, {"explicit_http_config": {"http2_protocol_options": {}}})
    }
    built.add(CLUSTER, ENGINE_CLUSTER, engine)


PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _add_clusters(built: Built, out: outbound.Outbound) -> None:
    for name in sorted(out.clusters):
        built.add(CLUSTER, name, out.cluster(name))
        built.add(ENDPOINT, name, out.load_assignment(name))


class Builder:
    """:func:`build`, memoized per (profile, listeners) at the cache's revision."""

    def __init__(self, cache: SnapshotCache) -> None:
        self.cache = cache
        self._memo: OrderedDict[tuple[NodeProfile, tuple[str, ...]], tuple[int, Built]] = OrderedDict()
        self.builds = 0

    def get(self, profile: NodeProfile, listeners: tuple[str, ...] = ()) -> Built:
        if not profile.sidecar:
            return self._memoized(profile, listeners)
        # Sidecars of one app differ only in their listeners' ports: the rules are translated
        # once per app and change, and each node gets the listeners moved to its own ports.
        shared = self._memoized(
            replace(
                profile,
                inbound_port=1 if profile.inbound_port is not None else None,
                inbound_host="0.0.0.0",
                outbound_port=1 if profile.outbound_port is not None else None,
            ),
            (),
        )
        addresses: dict[str, tuple[str, int]] = {}
        if profile.inbound_port is not None and INBOUND in shared.templates:
            addresses[INBOUND] = (profile.inbound_host, profile.inbound_port)
        if profile.outbound_port is not None:
            addresses[OUTBOUND] = ("127.0.0.1", profile.outbound_port)
        return self._memoized_relocation(profile, shared, addresses)

    def _memoized(self, profile: NodeProfile, listeners: tuple[str, ...]) -> Built:
        key = (profile, listeners)
        found = self._memo.get(key)
        revision = self.cache.revision
        if found is not None and found[0] == revision:
            self._memo.move_to_end(key)
            return found[1]
        built = build(self.cache, profile, listeners)
        self.builds += 1
        self._remember(key, revision, built)
        return built

    def _memoized_relocation(
        self, profile: NodeProfile, shared: Built, addresses: dict[str, tuple[str, int]]
    ) -> Built:
        key = (profile, ("@relocated",))
        found = self._memo.get(key)
        revision = self.cache.revision
        if found is not None and found[0] == revision:
            return found[1]
        built = shared.relocated(addresses)
        self._remember(key, revision, built)
        return built

    def _remember(self, key: tuple[NodeProfile, tuple[str, ...]], revision: int, built: Built) -> None:
        self._memo[key] = (revision, built)
        self._memo.move_to_end(key)
        while len(self._memo) > _MEMO_SIZE:
            self._memo.popitem(last=False)
