"""The ``traffic.opensergo.io/v1alpha1`` kinds: TrafficRouter, VirtualWorkload, TrafficLane.

TrafficRouter is Istio's VirtualService plus ``destination.fallback``. The fields a client SDK
routes with are typed. The proxy-only ones (redirect, retries, fault, CORS, TCP/TLS routes …) are
accepted as plain maps, so a real VirtualService body still parses.

TrafficRouter's upstream wire form, an Envoy ``RouteConfiguration``, is built and read in
:mod:`opensergo.spec.upstream.traffic`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Self

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from opensergo.spec.base import Resource, SpecModel
from opensergo.spec.errors import FieldError
from opensergo.spec.faulttolerance import CaseInsensitiveEnum
from opensergo.spec.secrets import SECRET_KEYS

GROUP = "traffic.opensergo.io"
VERSION = "v1alpha1"

CLUSTER_DOMAIN = "svc.cluster.local"
LANE_HEADER = "x-opensergo-traffic"


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


class TrafficRouter(_TrafficResource):
    KIND: ClassVar[str] = "TrafficRouter"
    PLURAL: ClassVar[str] = "trafficrouters"

    spec: TrafficRouterSpec


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
