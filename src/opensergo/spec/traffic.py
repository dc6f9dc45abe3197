"""The ``traffic.opensergo.io/v1alpha1`` kinds: TrafficRouter, VirtualWorkload, TrafficLane.

TrafficRouter is Istio's VirtualService plus ``destination.fallback``. The fields a client SDK
routes with are typed. The proxy-only ones (redirect, retries, fault, CORS, TCP/TLS routes …) are
accepted as plain maps, so a real VirtualService body still parses.

``TrafficRouter.to_proto()`` builds the Envoy ``RouteConfiguration`` that upstream consumers
(Spring Cloud Alibaba, Sentinel) expect: protocol.md §4.2, with the §4.4 bugs fixed.

* Every ``match`` block becomes its own Envoy route with the same action. Istio ORs the blocks,
  and upstream's merge into one AND-list changed the meaning. An HTTP route without ``match``
  becomes a single catch-all route.
* Every route has a path specifier: ``uri`` exact -> ``path``, prefix -> ``prefix``, regex ->
  ``safe_regex``, and ``prefix: "/"`` when there is no uri. Envoy rejects a route without one.
  ``ignoreUriCase`` sets ``case_sensitive: false``.
* ``method`` / ``authority`` / ``scheme`` become ``:method`` / ``:authority`` / ``:scheme`` header
  matchers. Header matchers use the non-deprecated ``string_match`` form, and an empty match
  (``{}``) means "header present". ``withoutHeaders`` become inverted matchers, and query
  parameter matchers carry their ``name``. Within each group, matchers are sorted by name so
  the output is the same on every push.
* Cluster names are ``outbound|<port>|<subset>|<fqdn>``. The port segment stays empty (as
  upstream) unless ``destination.port.number`` is set. A host that already contains a dot is
  taken as fully qualified and is not suffixed again, for domains and clusters alike.
* One destination gives ``cluster``, or the inline ``cluster_fallback`` plugin when it has a
  fallback. Several destinations give ``weighted_clusters`` (weights as UInt32Value,
  ``total_weight`` unset). An HTTP route with no destination (redirect or direct response only)
  is a proxy feature and is left out.
* Fallback on weighted routes (upstream drops it; the Envoy plugin takes a single cluster): the
  route carries ``metadata.filter_metadata["io.opensergo.router.v1.fallback"]``, a Struct whose
  fields map each weighted cluster name to the name of its fallback cluster (only destinations
  with a fallback appear). ``weighted_clusters`` stays exactly as Envoy and Spring Cloud Alibaba
  expect it; Envoy ignores metadata it has no filter for, and :meth:`TrafficRouter.from_proto`
  reads it back. If one cluster appears twice in a weighted route with different fallbacks, the
  first destination's fallback is kept.

Not translated because Envoy has no route-level equivalent, or they concern the proxy:
``sourceLabels``, ``sourceNamespace``, ``gateways``, ``port`` and the proxy-only HTTP route
fields.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Self

from envoy.config.core.v3 import extension_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import Message
from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from opensergo.proto.router.v1 import route_fallback_pb2
from opensergo.spec.base import Resource, SpecModel
from opensergo.spec.errors import FieldError, SpecError
from opensergo.spec.faulttolerance import CaseInsensitiveEnum
from opensergo.spec.secrets import SECRET_KEYS

GROUP = "traffic.opensergo.io"
VERSION = "v1alpha1"

CLUSTER_FALLBACK_PLUGIN = "envoy.router.cluster_specifier_plugin.cluster_fallback"
WEIGHTED_FALLBACK_METADATA = "io.opensergo.router.v1.fallback"
"""Route ``filter_metadata`` key: weighted cluster name -> fallback cluster name."""
CLUSTER_DOMAIN = "svc.cluster.local"
LANE_HEADER = "x-opensergo-traffic"

_TYPE_URL_PREFIX = "type.googleapis.com/"


class _TrafficResource(Resource):
    GROUP: ClassVar[str] = GROUP
    VERSION: ClassVar[str] = VERSION


# --- shared match types -----------------------------------------------------------------------


class StringMatch(SpecModel):
    """One of exact / prefix / regex (RE2, whole value). Empty means "present" for headers."""

    # Upstream samples write ``exact: 12345``; a header value is text either way.
    model_config = ConfigDict(coerce_numbers_to_str=True)

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) > 1:
            raise ValueError("set only one of exact, prefix, regex")
        return self

    @property
    def is_empty(self) -> bool:
        return self.exact is None and self.prefix is None and self.regex is None

    def matches(self, value: str | None, *, ignore_case: bool = False) -> bool:
        """Istio semantics: regex must match the whole value; empty match = value present."""
        if value is None:
            return False
        if self.exact is not None:
            return value.lower() == self.exact.lower() if ignore_case else value == self.exact
        if self.prefix is not None:
            return (
                value.lower().startswith(self.prefix.lower())
                if ignore_case
                else value.startswith(self.prefix)
            )
        if self.regex is not None:
            return re.fullmatch(self.regex, value) is not None
        return True


def _merge_single_key_maps(value: Any) -> Any:
    """Accept ``[{X-User-Id: {exact: '1'}}]`` (upstream lane sample) as ``{X-User-Id: {...}}``."""
    if not isinstance(value, list):
        return value
    merged: dict[Any, Any] = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"item {index}: expected a map of name -> match")
        for key, match in item.items():
            if key in merged:
                raise ValueError(f"{key!r} is listed twice")
            merged[key] = match
    return merged


MatchMap = Annotated[dict[str, StringMatch], BeforeValidator(_merge_single_key_maps)]


class HTTPMatchRequest(SpecModel):
    """All set conditions must hold (AND); a route's match blocks are ORed."""

    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: MatchMap = Field(default_factory=dict)
    queryParams: MatchMap = Field(default_factory=dict)
    withoutHeaders: MatchMap = Field(default_factory=dict)
    port: int | None = Field(default=None, ge=1, le=65535)
    sourceLabels: dict[str, str] = Field(default_factory=dict)
    gateways: list[str] | None = None
    ignoreUriCase: bool | None = None
    sourceNamespace: str | None = None
    statPrefix: str | None = None


# --- TrafficRouter ----------------------------------------------------------------------------


class PortSelector(SpecModel):
    number: int = Field(ge=1, le=65535)


class Fallback(SpecModel):
    """Used when the chosen subset has no instance (one level, no chains)."""

    host: str = Field(min_length=1)
    subset: str | None = None


class Destination(SpecModel):
    host: str = Field(min_length=1)
    subset: str | None = None
    port: PortSelector | None = None
    fallback: Fallback | None = None


class HTTPRouteDestination(SpecModel):
    destination: Destination
    weight: int | None = Field(default=None, ge=0, le=2**31 - 1)
    headers: dict[str, Any] | None = Field(default=None, json_schema_extra=SECRET_KEYS)  # Authorization...


class HTTPRoute(SpecModel):
    name: str | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    route: list[HTTPRouteDestination] = Field(default_factory=list)
    # Proxy features, accepted as written and not interpreted here.
    redirect: dict[str, Any] | None = None
    directResponse: dict[str, Any] | None = None
    delegate: dict[str, Any] | None = None
    rewrite: dict[str, Any] | None = None
    timeout: str | None = None
    retries: dict[str, Any] | None = None
    fault: dict[str, Any] | None = None
    mirror: dict[str, Any] | None = None
    mirrorPercent: int | None = None
    mirror_percent: int | None = None
    mirrorPercentage: dict[str, Any] | None = None
    corsPolicy: dict[str, Any] | None = None
    headers: dict[str, Any] | None = Field(default=None, json_schema_extra=SECRET_KEYS)

    @model_validator(mode="after")
    def _has_action(self) -> Self:
        if not self.route and not (self.redirect or self.directResponse or self.delegate):
            raise FieldError(
                ("route",), "needs at least one destination (or redirect/directResponse/delegate)"
            )
        if len(self.route) > 1 and sum(d.weight or 0 for d in self.route) == 0:
            raise FieldError(("route",), "give the destinations weights (they add up to 0)")
        return self


class TrafficRouterSpec(SpecModel):
    hosts: list[str] = Field(min_length=1)
    gateways: list[str] | None = None
    http: list[HTTPRoute] = Field(default_factory=list)
    tls: list[dict[str, Any]] | None = None
    tcp: list[dict[str, Any]] | None = None
    exportTo: list[str] | None = None


def service_fqdn(host: str, namespace: str) -> str:
    """``svc`` -> ``svc.<ns>.svc.cluster.local``; hosts with a dot (or ``*``) are kept as they are."""
    if host == "*" or "." in host:
        return host
    return f"{host}.{namespace}.{CLUSTER_DOMAIN}"


def cluster_name(host: str, namespace: str, subset: str | None = None, port: int | None = None) -> str:
    """Istio's outbound cluster name: ``outbound|<port>|<subset>|<fqdn>``."""
    return f"outbound|{port or ''}|{subset or ''}|{service_fqdn(host, namespace)}"


def parse_cluster_name(name: str, namespace: str) -> Destination:
    """The reverse of :func:`cluster_name`; a name in another form is taken as the host."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound":
        parts = ["", "", "", name]
    port, subset, host = parts[1], parts[2], parts[3]
    if not host:
        raise SpecError(f"cluster name {name!r} has no host")
    suffix = f".{namespace}.{CLUSTER_DOMAIN}"
    return Destination(
        host=host.removesuffix(suffix) if host.endswith(suffix) else host,
        subset=subset or None,
        port=PortSelector(number=int(port)) if port.isdigit() else None,
    )


def _string_matcher(match: StringMatch) -> Any:
    if match.exact is not None:
        return string_pb2.StringMatcher(exact=match.exact)
    if match.prefix is not None:
        return string_pb2.StringMatcher(prefix=match.prefix)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.regex or ""))


def _header_matcher(name: str, match: StringMatch, *, invert: bool = False) -> Any:
    matcher = rc.HeaderMatcher(name=name.lower(), invert_match=invert)
    if match.is_empty:
        matcher.present_match = True
    else:
        matcher.string_match.CopyFrom(_string_matcher(match))
    return matcher


def _route_match(match: HTTPMatchRequest | None) -> Any:
    out = rc.RouteMatch()
    uri = match.uri if match is not None else None
    if uri is None or uri.is_empty:
        out.prefix = "/"
    elif uri.exact is not None:
        out.path = uri.exact
    elif uri.prefix is not None:
        out.prefix = uri.prefix
    else:
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.regex or ""))
    if match is None:
        return out
    if match.ignoreUriCase:
        out.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=False))
    for pseudo, value in (
        (":method", match.method),
        (":authority", match.authority),
        (":scheme", match.scheme),
    ):
        if value is not None:
            out.headers.append(_header_matcher(pseudo, value))
    for name in sorted(match.headers):
        out.headers.append(_header_matcher(name, match.headers[name]))
    for name in sorted(match.withoutHeaders):
        out.headers.append(_header_matcher(name, match.withoutHeaders[name], invert=True))
    for name in sorted(match.queryParams):
        param = match.queryParams[name]
        query = rc.QueryParameterMatcher(name=name)
        if param.is_empty:
            query.present_match = True
        else:
            query.string_match.CopyFrom(_string_matcher(param))
        out.query_parameters.append(query)
    return out


def _route_action(route: list[HTTPRouteDestination], namespace: str) -> Any:
    def cluster(dest: Destination | Fallback, port: PortSelector | None = None) -> str:
        return cluster_name(dest.host, namespace, dest.subset, port.number if port else None)

    action = rc.RouteAction()
    if len(route) == 1:
        dest = route[0].destination
        if dest.fallback is None:
            action.cluster = cluster(dest, dest.port)
        else:
            config = route_fallback_pb2.ClusterFallbackConfig_ClusterConfig(
                RoutingCluster=cluster(dest, dest.port), FallbackCluster=cluster(dest.fallback)
            )
            typed = any_pb2.Any()
            typed.Pack(config, type_url_prefix=_TYPE_URL_PREFIX, deterministic=True)
            action.inline_cluster_specifier_plugin.extension.CopyFrom(
                extension_pb2.TypedExtensionConfig(name=CLUSTER_FALLBACK_PLUGIN, typed_config=typed)
            )
        return action
    for item in route:
        action.weighted_clusters.clusters.append(
            rc.WeightedCluster.ClusterWeight(
                name=cluster(item.destination, item.destination.port),
                weight=wrappers_pb2.UInt32Value(value=item.weight or 0),
            )
        )
    return action


def _weighted_fallbacks(route: list[HTTPRouteDestination], namespace: str) -> struct_pb2.Struct | None:
    """``{weighted cluster: fallback cluster}`` for a weighted route, None if there is none."""
    if len(route) < 2:
        return None
    mapping: dict[str, str] = {}
    for item in route:
        dest = item.destination
        if dest.fallback is None:
            continue
        routing = cluster_name(dest.host, namespace, dest.subset, dest.port.number if dest.port else None)
        mapping.setdefault(routing, cluster_name(dest.fallback.host, namespace, dest.fallback.subset))
    if not mapping:
        return None
    struct = struct_pb2.Struct()
    struct.update(mapping)
    return struct


class TrafficRouter(_TrafficResource):
    KIND: ClassVar[str] = "TrafficRouter"
    PLURAL: ClassVar[str] = "trafficrouters"

    spec: TrafficRouterSpec

    def to_proto(self) -> Message:
        namespace = self.metadata.namespace
        vhost = rc.VirtualHost(
            name=self.metadata.name,
            domains=[service_fqdn(h, namespace) for h in self.spec.hosts],
        )
        for http in self.spec.http:
            if not http.route:
                continue
            action = _route_action(http.route, namespace)
            fallbacks = _weighted_fallbacks(http.route, namespace)
            matches: list[HTTPMatchRequest | None] = list(http.match) or [None]
            for match in matches:
                route = rc.Route(match=_route_match(match), route=action)
                if fallbacks is not None:
                    route.metadata.filter_metadata[WEIGHTED_FALLBACK_METADATA].CopyFrom(fallbacks)
                name = (match.name if match is not None else None) or http.name
                if name:
                    route.name = name
                vhost.routes.append(route)
        config: Message = route_pb2.RouteConfiguration(name=self.metadata.name, virtual_hosts=[vhost])
        return config

    @classmethod
    def from_proto(cls, message: Message, *, name: str, namespace: str, app: str) -> Self:
        """Read a RouteConfiguration as the Go control plane (or :meth:`to_proto`) writes it."""
        if message.DESCRIPTOR.full_name != route_pb2.RouteConfiguration.DESCRIPTOR.full_name:
            raise SpecError(
                f"expected envoy.config.route.v3.RouteConfiguration, got {message.DESCRIPTOR.full_name}"
            )
        config: Any = message
        suffix = f".{namespace}.{CLUSTER_DOMAIN}"
        hosts: list[str] = []
        http: list[dict[str, Any]] = []
        for vhost in config.virtual_hosts:
            for domain in vhost.domains:
                short = domain.removesuffix(suffix) if domain.endswith(suffix) else domain
                if short not in hosts:
                    hosts.append(short)
            for route in vhost.routes:
                if route.WhichOneof("action") != "route":
                    continue
                destinations = _destinations_from_envoy(route.route, namespace)
                if not destinations:
                    continue
                _apply_weighted_fallbacks(route, destinations, namespace)
                match = _match_from_envoy(route.match)
                previous = http[-1] if http else None
                if (
                    match
                    and previous is not None
                    and previous.get("match")
                    and previous["route"] == destinations
                    and previous.get("name") == (route.name or None)
                ):
                    # Consecutive routes with one action are the OR-ed match blocks of one
                    # HTTP route (that is how to_proto writes them; first-match makes it equal).
                    previous["match"].append(match)
                    continue
                entry: dict[str, Any] = {"route": destinations}
                if match:
                    entry["match"] = [match]
                if route.name:
                    entry["name"] = route.name
                http.append(entry)
        spec = {"hosts": hosts, "http": http}
        return cls._from_upstream(name=config.name or name, namespace=namespace, app=app, spec=spec)


def _string_match_from_envoy(matcher: Any) -> dict[str, str]:
    kind = matcher.WhichOneof("match_pattern")
    if kind == "exact":
        return {"exact": matcher.exact}
    if kind == "prefix":
        return {"prefix": matcher.prefix}
    if kind == "safe_regex":
        return {"regex": matcher.safe_regex.regex}
    raise SpecError(f"unsupported string matcher {kind!r} in upstream route")


def _header_match_from_envoy(header: Any) -> dict[str, str]:
    kind = header.WhichOneof("header_match_specifier")
    if kind == "string_match":
        return _string_match_from_envoy(header.string_match)
    if kind == "exact_match":  # the deprecated forms the Go control plane writes
        return {"exact": header.exact_match}
    if kind == "prefix_match":
        return {"prefix": header.prefix_match}
    if kind == "safe_regex_match":
        return {"regex": header.safe_regex_match.regex}
    if kind == "present_match" and header.present_match:
        return {}
    raise SpecError(f"unsupported header matcher {kind!r} for {header.name!r} in upstream route")


def _match_from_envoy(match: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    path = match.WhichOneof("path_specifier")
    if path == "path":
        out["uri"] = {"exact": match.path}
    elif path == "prefix" and match.prefix not in ("", "/"):
        out["uri"] = {"prefix": match.prefix}
    elif path == "safe_regex":
        out["uri"] = {"regex": match.safe_regex.regex}
    if match.HasField("case_sensitive") and not match.case_sensitive.value:
        out["ignoreUriCase"] = True
    pseudo = {":method": "method", ":authority": "authority", ":scheme": "scheme"}
    for header in match.headers:
        value = _header_match_from_envoy(header)
        if header.name in pseudo and not header.invert_match:
            out[pseudo[header.name]] = value
        else:
            out.setdefault("withoutHeaders" if header.invert_match else "headers", {})[header.name] = value
    for query in match.query_parameters:
        if not query.name:
            continue  # upstream never sets the name; such a matcher cannot be applied
        kind = query.WhichOneof("query_parameter_match_specifier")
        value = _string_match_from_envoy(query.string_match) if kind == "string_match" else {}
        out.setdefault("queryParams", {})[query.name] = value
    return out


def _destinations_from_envoy(action: Any, namespace: str) -> list[dict[str, Any]]:
    kind = action.WhichOneof("cluster_specifier")
    if kind == "cluster":
        return [{"destination": _destination_dict(action.cluster, namespace)}]
    if kind == "weighted_clusters":
        return [
            {"destination": _destination_dict(c.name, namespace), "weight": c.weight.value}
            for c in action.weighted_clusters.clusters
        ]
    if kind == "inline_cluster_specifier_plugin":
        config = route_fallback_pb2.ClusterFallbackConfig_ClusterConfig()
        if not action.inline_cluster_specifier_plugin.extension.typed_config.Unpack(config):
            raise SpecError("inline cluster specifier plugin is not a ClusterFallbackConfig_ClusterConfig")
        dest = _destination_dict(config.RoutingCluster, namespace)
        fallback = _destination_dict(config.FallbackCluster, namespace)
        dest["fallback"] = {k: v for k, v in fallback.items() if k in ("host", "subset")}
        return [{"destination": dest}]
    return []


def _apply_weighted_fallbacks(route: Any, destinations: list[dict[str, Any]], namespace: str) -> None:
    """Restore per-destination fallbacks of a weighted route from its route metadata."""
    if WEIGHTED_FALLBACK_METADATA not in route.metadata.filter_metadata:
        return
    if route.route.WhichOneof("cluster_specifier") != "weighted_clusters":
        return
    fields = route.metadata.filter_metadata[WEIGHTED_FALLBACK_METADATA].fields
    for item, weighted in zip(destinations, route.route.weighted_clusters.clusters, strict=True):
        value = fields.get(weighted.name)
        if value is None or value.WhichOneof("kind") != "string_value":
            continue
        fallback = _destination_dict(value.string_value, namespace)
        item["destination"]["fallback"] = {k: v for k, v in fallback.items() if k in ("host", "subset")}


def _destination_dict(name: str, namespace: str) -> dict[str, Any]:
    return parse_cluster_name(name, namespace).model_dump(exclude_none=True)


# --- VirtualWorkload --------------------------------------------------------------------------


class SimpleLB(CaseInsensitiveEnum):
    UNSPECIFIED = "UNSPECIFIED"
    LEAST_CONN = "LEAST_CONN"  # deprecated alias of LEAST_REQUEST
    RANDOM = "RANDOM"
    PASSTHROUGH = "PASSTHROUGH"
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_REQUEST = "LEAST_REQUEST"


class HTTPCookie(SpecModel):
    name: str = Field(min_length=1)
    path: str | None = None
    ttl: str | None = None


class RingHash(SpecModel):
    minimumRingSize: int | None = Field(default=None, ge=1)


class Maglev(SpecModel):
    tableSize: int | None = Field(default=None, ge=1)


class ConsistentHashLB(SpecModel):
    """Same key -> same instance. Exactly one key source."""

    httpHeaderName: str | None = None
    httpCookie: HTTPCookie | None = None
    useSourceIp: bool | None = None
    httpQueryParameterName: str | None = None
    ringHash: RingHash | None = None
    maglev: Maglev | None = None
    minimumRingSize: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        keys = [self.httpHeaderName, self.httpCookie, self.useSourceIp or None, self.httpQueryParameterName]
        if sum(k is not None for k in keys) != 1:
            raise ValueError(
                "set exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName"
            )
        if self.ringHash is not None and self.maglev is not None:
            raise ValueError("set only one of ringHash, maglev")
        return self


class LoadBalancerSettings(SpecModel):
    simple: SimpleLB | None = None
    consistentHash: ConsistentHashLB | None = None
    localityLbSetting: dict[str, Any] | None = None
    warmupDurationSecs: str | None = None

    @model_validator(mode="after")
    def _one_policy(self) -> Self:
        if self.simple is not None and self.consistentHash is not None:
            raise ValueError("set only one of simple, consistentHash")
        return self


class TrafficPolicy(SpecModel):
    loadBalancer: LoadBalancerSettings | None = None
    # Proxy features, accepted as written.
    connectionPool: dict[str, Any] | None = None
    outlierDetection: dict[str, Any] | None = None
    tls: dict[str, Any] | None = Field(default=None, json_schema_extra=SECRET_KEYS)
    portLevelSettings: list[dict[str, Any]] | None = None


class Subset(SpecModel):
    """Instances whose labels include every one of ``labels``."""

    name: str = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    trafficPolicy: TrafficPolicy | None = None


class VirtualWorkloadSpec(SpecModel):
    """Istio DestinationRule shape: what a subset of ``host`` is and how to balance inside it."""

    host: str = Field(min_length=1)
    trafficPolicy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    exportTo: list[str] | None = None

    @field_validator("subsets")
    @classmethod
    def _unique_names(cls, value: list[Subset]) -> list[Subset]:
        seen: set[str] = set()
        for index, subset in enumerate(value):
            if subset.name in seen:
                raise FieldError((index, "name"), f"duplicate subset name {subset.name!r}")
            seen.add(subset.name)
        return value

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)


class VirtualWorkload(_TrafficResource):
    KIND: ClassVar[str] = "VirtualWorkload"
    PLURAL: ClassVar[str] = "virtualworkloads"

    spec: VirtualWorkloadSpec


# --- TrafficLane ------------------------------------------------------------------------------


class LaneTraffic(SpecModel):
    http: HTTPMatchRequest | None = None


class LaneWorkload(SpecModel):
    selector: dict[str, str] = Field(min_length=1)


class LaneRules(SpecModel):
    """Colour a request when its traffic matches, or when it passes through a matching workload."""

    traffic: LaneTraffic | None = None
    workload: LaneWorkload | None = None

    @model_validator(mode="after")
    def _some_rule(self) -> Self:
        if self.traffic is None and self.workload is None:
            raise ValueError("set traffic, workload, or both")
        return self


class Lane(SpecModel):
    name: str = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _header_safe(cls, value: str) -> str:
        # The lane travels in a header and in W3C baggage.
        if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", value):
            raise ValueError(f"invalid lane name {value!r}: use letters, digits and -._~ only")
        return value


class TrafficLaneSpec(SpecModel):
    selector: dict[str, str] = Field(default_factory=dict)
    rules: LaneRules
    lane: Lane
    traceIdBaggage: str = Field(default=LANE_HEADER, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _hoist_from_rules(cls, data: Any) -> Any:
        # The upstream sample indents lane/traceIdBaggage under ``rules``; they belong to spec.
        if isinstance(data, dict) and isinstance(data.get("rules"), dict):
            rules = dict(data["rules"])
            data = dict(data)
            for key in ("lane", "traceIdBaggage"):
                if key in rules and key not in data:
                    data[key] = rules.pop(key)
            data["rules"] = rules
        return data


class TrafficLane(_TrafficResource):
    KIND: ClassVar[str] = "TrafficLane"
    PLURAL: ClassVar[str] = "trafficlanes"

    spec: TrafficLaneSpec
