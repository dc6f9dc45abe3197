"""One TrafficRouter HTTP route -> Envoy routes, with the route's resilience fields.

Matches come from the upstream conversion (``TrafficRouter.to_proto``: one Envoy route per
``match`` block, every route with a path specifier), so the sidecar, proxyless gRPC and the
upstream SDKs read one match semantics. The action is built here because Envoy needs what the
upstream form cannot carry: clusters that exist in CDS (fallback resolved by the control plane,
which knows the endpoints), timeouts, retries, fault injection, mirroring, rewrites, redirects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format

from opensergo.controlplane.xds.resources import seconds, typed
from opensergo.spec.resilience import RoutePolicy, route_policy
from opensergo.spec.traffic import (
    Destination,
    HTTPRoute,
    HTTPRouteDestination,
    TrafficRouter,
    TrafficRouterSpec,
)
from opensergo.spec.upstream.codec import to_proto

FAULT_FILTER = "envoy.filters.http.fault"
# The route (Target) resolver: destination -> Envoy cluster name, the fallback applied when the
# destination's own cluster has no endpoint.
ClusterOf = Callable[[Destination], str]

_REDIRECT_CODES = {
    301: "MOVED_PERMANENTLY",
    302: "FOUND",
    303: "SEE_OTHER",
    307: "TEMPORARY_REDIRECT",
    308: "PERMANENT_REDIRECT",
}


def fractional(percent: float) -> dict[str, Any]:
    """A FractionalPercent in millionths (Istio percentages have decimals)."""
    return {"numerator": round(percent * 10_000), "denominator": "MILLION"}


def route_matches(router: TrafficRouter, http: HTTPRoute) -> list[dict[str, Any]]:
    """The Envoy RouteMatch (JSON form) of each match block of ``http``, in order."""
    placeholder = HTTPRouteDestination(destination=Destination(host="placeholder"))
    single = HTTPRoute(match=http.match, route=[placeholder])
    copy = router.model_copy(update={"spec": TrafficRouterSpec(hosts=router.spec.hosts, http=[single])})
    config: Any = to_proto(copy)
    return [
        json_format.MessageToDict(route.match, preserving_proto_field_name=True)
        for route in config.virtual_hosts[0].routes
    ]


def _retry_policy(policy: RoutePolicy, grpc: bool) -> dict[str, Any] | None:
    retries = policy.retries
    if retries is None:
        return None
    conditions = list(retries.retry_on)
    out: dict[str, Any] = {"num_retries": retries.attempts}
    if retries.status_codes:
        conditions.append("retriable-status-codes")
        out["retriable_status_codes"] = sorted(retries.status_codes)
    if grpc:
        # gRPC clients know only the gRPC conditions; an unknown one would be NACKed.
        conditions = [c for c in conditions if c in _GRPC_CONDITIONS] or ["unavailable"]
        out.pop("retriable_status_codes", None)
    out["retry_on"] = ",".join(dict.fromkeys(conditions))
    if retries.per_try_timeout is not None:
        out["per_try_timeout"] = seconds(retries.per_try_timeout)
    return out


_GRPC_CONDITIONS = frozenset(
    {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
)


def fault_config(policy: RoutePolicy) -> dict[str, Any] | None:
    """The per-route HTTPFault, or None."""
    out: dict[str, Any] = {}
    if policy.delay is not None:
        out["delay"] = {
            "fixed_delay": seconds(policy.delay.seconds),
            "percentage": fractional(policy.delay.percent),
        }
    if policy.abort is not None:
        abort: dict[str, Any] = {"percentage": fractional(policy.abort.percent)}
        if policy.abort.http_status is not None:
            abort["http_status"] = policy.abort.http_status
        else:
            abort["grpc_status"] = _grpc_code(policy.abort.grpc_status or "UNAVAILABLE")
        out["abort"] = abort
    if not out:
        return None
    return typed("envoy.extensions.filters.http.fault.v3.HTTPFault", out)


def _grpc_code(name: str) -> int:
    name = name.strip().upper()
    if name.isdigit():
        return int(name)
    code = grpc.StatusCode.__members__.get(name, grpc.StatusCode.UNAVAILABLE)
    number: int = code.value[0]
    return number


def _redirect(policy: RoutePolicy) -> dict[str, Any]:
    redirect = policy.redirect
    assert redirect is not None
    out: dict[str, Any] = {"response_code": _REDIRECT_CODES[redirect.code]}
    if redirect.uri:
        out["path_redirect"] = redirect.uri
    if redirect.authority:
        out["host_redirect"] = redirect.authority
    if redirect.scheme:
        out["scheme_redirect"] = redirect.scheme
    if redirect.port:
        out["port_redirect"] = int(redirect.port)
    return out


def build_routes(
    router: TrafficRouter,
    http: HTTPRoute,
    index: int,
    cluster_of: ClusterOf,
    *,
    grpc: bool = False,
    hash_policy: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Envoy routes (JSON form) for one HTTP route: one per match block, same action each."""
    policy = route_policy(http)
    matches = route_matches(router, http)
    name = http.name or f"{router.metadata.name}[{index}]"
    base: dict[str, Any] = {}
    if policy.redirect is not None:
        base["redirect"] = _redirect(policy)
    elif policy.direct_response is not None:
        base["direct_response"] = {
            "status": policy.direct_response.status,
            "body": {"inline_string": policy.direct_response.body},
        }
    elif http.route:
        base["route"] = _action(http, policy, cluster_of, grpc=grpc, hash_policy=hash_policy)
    else:
        return []  # delegate: not supported by a sidecar
    fault = fault_config(policy)
    if fault is not None:
        base["typed_per_filter_config"] = {FAULT_FILTER: fault}
    routes = []
    for position, match in enumerate(matches):
        route = {"name": name if len(matches) == 1 else f"{name}/{position}", "match": match, **base}
        routes.append(route)
    return routes


def _action(
    http: HTTPRoute,
    policy: RoutePolicy,
    cluster_of: ClusterOf,
    *,
    grpc: bool,
    hash_policy: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    action: dict[str, Any] = {}
    if len(http.route) == 1:
        action["cluster"] = cluster_of(http.route[0].destination)
    else:
        weighted: dict[str, int] = {}
        for item in http.route:
            if not item.weight:
                continue
            name = cluster_of(item.destination)
            weighted[name] = weighted.get(name, 0) + item.weight  # a fallback may merge two
        action["weighted_clusters"] = {"clusters": [{"name": n, "weight": w} for n, w in weighted.items()]}
    # Envoy's 15 s default would cut calls the SDK lets run: no timeout unless the rule sets one.
    if not grpc:
        action["timeout"] = seconds(policy.timeout or 0)
    elif policy.timeout is not None:
        action["max_stream_duration"] = {"max_stream_duration": seconds(policy.timeout)}
    retry = _retry_policy(policy, grpc)
    if retry is not None:
        action["retry_policy"] = retry
    if policy.mirror is not None:
        mirror = policy.mirror
        target = Destination.model_validate(
            {
                "host": mirror.host,
                "subset": mirror.subset,
                **({"port": {"number": mirror.port}} if mirror.port else {}),
            }
        )
        action["request_mirror_policies"] = [
            {"cluster": cluster_of(target), "runtime_fraction": {"default_value": fractional(mirror.percent)}}
        ]
    if policy.rewrite is not None:
        if policy.rewrite.uri is not None:
            action["prefix_rewrite"] = policy.rewrite.uri
        if policy.rewrite.authority is not None:
            action["host_rewrite_literal"] = policy.rewrite.authority
    if hash_policy:
        action["hash_policy"] = hash_policy
    return action
