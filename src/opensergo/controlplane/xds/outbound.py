"""Outbound: TrafficRouter -> routes, VirtualWorkload -> clusters, ServiceInstance -> endpoints.

The same pipeline as the SDK's ServiceDirectory (docs/routing.md), in Envoy's terms:

* One virtual host per service, matched by ``Host``/``:authority`` (``svc``, ``svc:<port>``,
  ``svc.<ns>.svc.cluster.local``). Its routes come from the service's TrafficRouters (name
  order, first match wins); without a router every request goes to the service's cluster. No
  route matching gives Envoy's 404, as the SDK's default ``no_match="error"``.
* One EDS cluster per (service, subset): ``outbound|<port>|<subset>|<fqdn>`` (Istio's names, the
  ones the upstream RouteConfiguration uses), so each subset has its own breakers, ejection and
  stats, and proxyless gRPC (which has no subset load balancer) can use them. A subset is the
  VirtualWorkload subset of that name, else the selector ``{version: <subset>}``.
* Fallback: a destination whose subset has no endpoint is routed to its fallback cluster. The
  control plane knows the endpoints, so the route is rewritten when the EDS changes (Envoy keeps
  a weighted share on an empty cluster and answers 503).
* Lanes: when a service has instances tagged with a lane (label ``tag``), every route gets a twin
  before it matching ``x-opensergo-traffic: <lane>`` (any case) whose clusters hold only that
  lane's instances (``outbound|<port>|<subset>~<lane>|<fqdn>``); other traffic goes to the
  untagged instances when there are any. The lane header itself travels unchanged.
* Load balancing, ``outlierDetection`` and ``connectionPool`` come from the subset's
  ``trafficPolicy``, else the host's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opensergo.controlplane.xds.resources import seconds
from opensergo.controlplane.xds.routes import FAULT_FILTER, build_routes
from opensergo.controlplane.xds.view import RuleView
from opensergo.spec.errors import SpecError
from opensergo.spec.resilience import parse_duration_seconds
from opensergo.spec.traffic import (
    LANE_HEADER,
    Destination,
    LoadBalancerSettings,
    SimpleLB,
    TrafficPolicy,
    TrafficRouter,
    VirtualWorkload,
)
from opensergo.spec.upstream.traffic import cluster_name, service_fqdn

log = logging.getLogger(__name__)

ADS = {"ads": {}, "resource_api_version": "V3"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tag: str
    labels: Mapping[str, str]
    weight: int


@dataclass(frozen=True, slots=True)
class ClusterKey:
    host: str
    subset: str | None
    port: int | None
    lane: str | None  # None: traffic without a lane

    def name(self, namespace: str) -> str:
        subset = self.subset or ""
        if self.lane is not None:
            subset = f"{subset}~{self.lane}"
        return cluster_name(self.host, namespace, subset or None, self.port)


class ServiceState:
    """One service's rules and endpoints as the view shows them."""

    def __init__(self, view: RuleView, namespace: str, name: str, protocol: str) -> None:
        self.name = name
        self.routers: list[TrafficRouter] = view.routers(namespace, name)
        self.workload: VirtualWorkload | None = view.workload(namespace, name)
        self.endpoints: list[Endpoint] = []
        for instance in view.instances(namespace, name):
            spec = instance.spec
            address = _address(instance.spec.addresses, protocol)
            if address is None:
                continue
            tag = spec.labels.get("tag", "").lower()
            self.endpoints.append(Endpoint(address[0], address[1], tag, spec.labels, spec.weight))
        self.lanes = sorted({e.tag for e in self.endpoints if e.tag})

    def selector(self, subset: str | None) -> Mapping[str, str]:
        if subset is None:
            return {}
        if self.workload is not None:
            found = self.workload.spec.subset(subset)
            if found is not None:
                return found.labels
        return {"version": subset}

    def policy(self, subset: str | None) -> TrafficPolicy | None:
        """The subset's policy, each setting it leaves out taken from the host's (Istio)."""
        if self.workload is None:
            return None
        host_policy = self.workload.spec.trafficPolicy
        found = self.workload.spec.subset(subset) if subset is not None else None
        if found is None or found.trafficPolicy is None:
            return host_policy
        if host_policy is None:
            return found.trafficPolicy
        own = found.trafficPolicy.model_dump(exclude_none=True)
        return host_policy.model_copy(update={k: getattr(found.trafficPolicy, k) for k in own})

    def members(self, key: ClusterKey) -> list[Endpoint]:
        selector = self.selector(key.subset)
        members = [e for e in self.endpoints if all(e.labels.get(k) == v for k, v in selector.items())]
        if key.lane is not None:
            return [e for e in members if e.tag == key.lane]
        untagged = [e for e in members if not e.tag]
        return untagged or members


def _address(addresses: Sequence[Any], protocol: str) -> tuple[str, int] | None:
    by_protocol = {a.protocol.lower(): a for a in reversed(addresses)}
    found = by_protocol.get(protocol) or by_protocol.get("") or (addresses[0] if addresses else None)
    return (found.address, found.port) if found is not None else None


class Outbound:
    """Builds the outbound routes, clusters and endpoints of one node."""

    def __init__(self, view: RuleView, namespace: str, *, grpc: bool) -> None:
        self.view = view
        self.namespace = namespace
        self.grpc = grpc
        self.protocol = "grpc" if grpc else "http"
        self._services: dict[str, ServiceState] = {}
        self.clusters: dict[str, ClusterKey] = {}

    def service(self, host: str) -> ServiceState:
        name = _short(host, self.namespace)
        state = self._services.get(name)
        if state is None:
            state = self._services[name] = ServiceState(self.view, self.namespace, name, self.protocol)
        return state

    def _use(self, key: ClusterKey) -> str:
        name = key.name(self.namespace)
        self.clusters.setdefault(name, key)
        return name

    def _cluster_for(self, dest: Destination, lane: str | None) -> str:
        """The cluster for ``dest``; its fallback's when its own would be empty."""
        port = dest.port.number if dest.port else None
        key = ClusterKey(_short(dest.host, self.namespace), dest.subset, port, lane)
        if not self.service(dest.host).members(key) and dest.fallback is not None:
            fallback = ClusterKey(
                _short(dest.fallback.host, self.namespace), dest.fallback.subset, None, lane
            )
            if self.service(dest.fallback.host).members(fallback):
                return self._use(fallback)
        return self._use(key)

    def virtual_host(self, service: str, domains: list[str]) -> dict[str, Any]:
        state = self.service(service)
        # Every subset gets its cluster whether or not a route uses it now: if Envoy rejects
        # a new route configuration, the routes it keeps still find their clusters.
        subsets = [None, *(s.name for s in state.workload.spec.subsets)] if state.workload else [None]
        for subset in subsets:
            for lane in [*state.lanes, None]:
                self._use(ClusterKey(state.name, subset, None, lane))
        hash_policy = _hash_policy(state.policy(None))
        routes: list[dict[str, Any]] = []
        for lane in [*state.lanes, None]:
            lane_routes: list[dict[str, Any]] = []
            if state.routers:
                for router in state.routers:
                    for index, http in enumerate(router.spec.http):
                        try:
                            lane_routes += build_routes(
                                router,
                                http,
                                index,
                                lambda d, lane=lane: self._cluster_for(d, lane),  # type: ignore[misc]
                                grpc=self.grpc,
                                hash_policy=hash_policy,
                            )
                        except (SpecError, ValueError) as err:
                            log.warning("TrafficRouter %s http[%d]: %s", router.name, index, err)
            else:
                route: dict[str, Any] = {"cluster": self._use(ClusterKey(state.name, None, None, lane))}
                if not self.grpc:
                    route["timeout"] = "0s"
                if hash_policy:
                    route["hash_policy"] = hash_policy
                lane_routes.append({"name": "default", "match": {"prefix": "/"}, "route": route})
            if lane is not None:
                for route in lane_routes:
                    route["name"] = f"{route['name']}~{lane}"
                    route["match"].setdefault("headers", []).append(
                        {"name": LANE_HEADER, "string_match": {"exact": lane, "ignore_case": True}}
                    )
            routes += lane_routes
        return {"name": service, "domains": domains, "routes": routes}

    def cluster(self, name: str) -> dict[str, Any]:
        key = self.clusters[name]
        state = self.service(key.host)
        policy = state.policy(key.subset)
        cluster: dict[str, Any] = {
            "name": name,
            "type": "EDS",
            "eds_cluster_config": {"eds_config": ADS},
            "connect_timeout": "1s",
            "lb_policy": _lb_policy(policy.loadBalancer if policy else None, self.grpc),
        }
        if policy is not None:
            _apply_outlier_detection(cluster, policy.outlierDetection)
            _apply_connection_pool(cluster, policy.connectionPool)
        return cluster

    def load_assignment(self, name: str) -> dict[str, Any]:
        key = self.clusters[name]
        members = self.service(key.host).members(key)
        lb_endpoints = []
        for endpoint in members:
            port = key.port or endpoint.port
            lb_endpoints.append(
                {
                    "endpoint": {
                        "address": {"socket_address": {"address": endpoint.host, "port_value": port}}
                    },
                    "load_balancing_weight": max(1, endpoint.weight),
                }
            )
        # gRPC NACKs a LocalityLbEndpoints without a locality and ignores one without a weight.
        locality = {"locality": {"zone": "default"}, "load_balancing_weight": 1, "lb_endpoints": lb_endpoints}
        return {"cluster_name": name, "endpoints": [locality] if lb_endpoints else []}


def _short(host: str, namespace: str) -> str:
    suffix = f".{namespace}.svc.cluster.local"
    return host[: -len(suffix)] if host.endswith(suffix) else host


def domains_of(service: str, namespace: str) -> list[str]:
    fqdn = service_fqdn(service, namespace)
    return [service, f"{service}:*", fqdn, f"{fqdn}:*"]


def _lb_policy(settings: LoadBalancerSettings | None, grpc: bool) -> str:
    if settings is None:
        return "ROUND_ROBIN"
    if settings.consistentHash is not None:
        return "RING_HASH"
    if grpc:
        return "ROUND_ROBIN"  # gRPC C-core has no random or least-request policy
    if settings.simple is SimpleLB.RANDOM:
        return "RANDOM"
    if settings.simple in (SimpleLB.LEAST_REQUEST, SimpleLB.LEAST_CONN):
        return "LEAST_REQUEST"
    return "ROUND_ROBIN"


def _hash_policy(policy: TrafficPolicy | None) -> list[dict[str, Any]] | None:
    if policy is None or policy.loadBalancer is None or policy.loadBalancer.consistentHash is None:
        return None
    hashed = policy.loadBalancer.consistentHash
    if hashed.httpHeaderName:
        return [{"header": {"header_name": hashed.httpHeaderName}}]
    if hashed.httpCookie is not None:
        cookie: dict[str, Any] = {"name": hashed.httpCookie.name}
        if hashed.httpCookie.path:
            cookie["path"] = hashed.httpCookie.path
        return [{"cookie": cookie}]
    if hashed.httpQueryParameterName:
        return [{"query_parameter": {"name": hashed.httpQueryParameterName}}]
    return [{"connection_properties": {"source_ip": True}}]


def _duration(value: Any, path: tuple[str | int, ...]) -> str:
    return seconds(parse_duration_seconds(value, path))


def _apply_outlier_detection(cluster: dict[str, Any], spec: Mapping[str, Any] | None) -> None:
    """Istio's OutlierDetection: consecutive 5xx / gateway errors eject a host for
    baseEjectionTime x ejections; Envoy's gateway ejection is off unless enforced (100)."""
    if not spec:
        return
    consecutive_5xx = spec.get("consecutive5xxErrors", spec.get("consecutiveErrors", 5))
    gateway = spec.get("consecutiveGatewayErrors", 0)
    detection: dict[str, Any] = {
        "consecutive_5xx": int(consecutive_5xx) if consecutive_5xx else 0,
        "enforcing_consecutive_5xx": 100 if consecutive_5xx else 0,
        "consecutive_gateway_failure": int(gateway) if gateway else 0,
        "enforcing_consecutive_gateway_failure": 100 if gateway else 0,
        "enforcing_success_rate": 0,
        "interval": _duration(spec.get("interval", "10s"), ("outlierDetection", "interval")),
        "base_ejection_time": _duration(
            spec.get("baseEjectionTime", "30s"), ("outlierDetection", "baseEjectionTime")
        ),
        "max_ejection_percent": int(spec.get("maxEjectionPercent", 10)),
    }
    cluster["outlier_detection"] = detection
    if "minHealthPercent" in spec:
        cluster.setdefault("common_lb_config", {})["healthy_panic_threshold"] = {
            "value": float(spec["minHealthPercent"])
        }


def _apply_connection_pool(cluster: dict[str, Any], spec: Mapping[str, Any] | None) -> None:
    """Istio's ConnectionPoolSettings -> circuit breakers and connection options."""
    if not spec:
        return
    tcp = spec.get("tcp") or {}
    http = spec.get("http") or {}
    thresholds: dict[str, Any] = {}
    if "maxConnections" in tcp:
        thresholds["max_connections"] = int(tcp["maxConnections"])
    if "http1MaxPendingRequests" in http:
        thresholds["max_pending_requests"] = int(http["http1MaxPendingRequests"])
    if "http2MaxRequests" in http:
        thresholds["max_requests"] = int(http["http2MaxRequests"])
    if "maxRetries" in http:
        thresholds["max_retries"] = int(http["maxRetries"])
    if thresholds:
        cluster["circuit_breakers"] = {"thresholds": [thresholds]}
    if "connectTimeout" in tcp:
        cluster["connect_timeout"] = _duration(
            tcp["connectTimeout"], ("connectionPool", "tcp", "connectTimeout")
        )
    common: dict[str, Any] = {}
    if "maxRequestsPerConnection" in http:
        common["max_requests_per_connection"] = int(http["maxRequestsPerConnection"])
    if "idleTimeout" in http:
        common["idle_timeout"] = _duration(http["idleTimeout"], ("connectionPool", "http", "idleTimeout"))
    if common:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": common,
                "explicit_http_config": {"http_protocol_options": {}},
            }
        }


def hcm_filters(grpc: bool) -> list[dict[str, Any]]:
    """Outbound HTTP filters: fault injection (configured per route), then the router."""
    return [
        {
            "name": FAULT_FILTER,
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"},
        },
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        },
    ]
