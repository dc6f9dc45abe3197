"""Inbound: an app's fault-tolerance rules -> the routes and filters of its sidecar's listener.

Each FaultToleranceRule target names a resource as the SDK does (docs/integrations.md):
``GET:/users/{id}`` (method + path template; ``{x}`` and ``<x>`` match one path segment) or a
gRPC method ``/pkg.Service/Method``. Every governed resource becomes a route of its own, before
a catch-all route to the app:

* ``RateLimitStrategy`` Local (and GlobalToLocal, divided by the app's live instance count) ->
  a per-route ``local_ratelimit`` token bucket of ``threshold`` tokens refilled every
  ``statDuration``. Global -> the ``ratelimit`` filter, whose descriptor (namespace, app,
  resource, strategy) the control plane's RateLimitService answers from the token service.
* ``ConcurrencyLimitStrategy`` -> the route goes to a cluster of its own whose circuit breaker
  allows ``maxConcurrency`` requests in flight.
* ``CircuitBreakerStrategy`` (error ratio) -> ``admission_control`` over ``statDuration``;
  ``AdaptiveOverloadProtectionStrategy`` -> ``adaptive_concurrency`` (listener-wide).
* ``HttpRequestFallbackAction`` (or the SDK's default 429 "Blocked by OpenSergo (flow
  limiting)") -> a per-route ``custom_response`` that rewrites a blocked answer (marked by
  the ``x-opensergo-blocked``, ``x-envoy-ratelimited`` or ``x-envoy-overloaded`` header) to the
  action's status, body and headers. The app's own answers are never rewritten.

docs/sidecar.md tabulates where this is exact and where it approximates Sentinel's semantics.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from opensergo.controlplane.xds.resources import seconds, typed
from opensergo.controlplane.xds.routes import FAULT_FILTER
from opensergo.controlplane.xds.view import RuleView
from opensergo.spec import kinds
from opensergo.spec.base import Resource
from opensergo.spec.faulttolerance import (
    STRATEGY_KINDS,
    AdaptiveOverloadProtectionStrategy,
    BreakerStrategy,
    CircuitBreakerStrategy,
    ConcurrencyLimitStrategy,
    FaultToleranceRule,
    HttpRequestFallbackAction,
    LimitMode,
    RateLimitStrategy,
)

log = logging.getLogger(__name__)

RULE_KIND = kinds.lookup("FaultToleranceRule").full_kind
FALLBACK_KIND = kinds.lookup("HttpRequestFallbackAction").full_kind
STRATEGY_KIND_NAMES = {cls.KIND: kinds.lookup(cls.KIND).full_kind for cls in STRATEGY_KINDS}
INSTANCE_KIND = kinds.lookup("ServiceInstance").full_kind

RATELIMIT_DOMAIN = "opensergo"
BLOCKED_HEADER = "x-opensergo-blocked"
DEFAULT_FALLBACK = (429, "Blocked by OpenSergo (flow limiting)", (("content-type", "text/plain"),))
_TEMPLATE = re.compile(r"\{[^/{}]*\}|<[^/<>]*>")


@dataclass
class Governed:
    """What the rules ask for one resource."""

    resource: str
    rate: RateLimitStrategy | None = None
    global_rates: list[RateLimitStrategy] = field(default_factory=list)
    concurrency: int | None = None
    fallback: HttpRequestFallbackAction | None = None


@dataclass
class InboundPlan:
    governed: list[Governed]
    breaker: CircuitBreakerStrategy | None
    adaptive: AdaptiveOverloadProtectionStrategy | None


def route_match(resource: str) -> dict[str, Any] | None:
    """The RouteMatch of an SDK resource name; None for a name that is not an inbound request."""
    method, sep, path = resource.partition(":")
    if not sep or not path.startswith("/"):
        if resource.startswith("/") and resource.count("/") >= 2:
            return {"path": resource}  # a gRPC method
        return None
    match: dict[str, Any] = {"headers": [{"name": ":method", "string_match": {"exact": method.upper()}}]}
    if _TEMPLATE.search(path):
        parts = _TEMPLATE.split(path)
        regex = "[^/]+".join(re.escape(p) for p in parts)
        match["safe_regex"] = {"regex": regex}
    else:
        match["path"] = path
    return match


def plan(view: RuleView, namespace: str, app: str) -> InboundPlan:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    """Resolve the app's FaultToleranceRules into per-resource needs (first rule wins a tie)."""
    strategies: dict[str, list[Resource]] = {}
    for full in STRATEGY_KIND_NAMES.values():
        for item in view.group(namespace, app, full):
            strategies.setdefault(item.name, []).append(item)
    fallbacks = {f.name: f for f in view.group(namespace, app, FALLBACK_KIND)}
    instances = max(1, len(view.instances(namespace, app)))
    by_resource: dict[str, Governed] = {}
    breaker: CircuitBreakerStrategy | None = None
    adaptive: AdaptiveOverloadProtectionStrategy | None = None
    rules = sorted(
        (r for r in view.group(namespace, app, RULE_KIND) if isinstance(r, FaultToleranceRule)),
        key=lambda r: r.name,
    )
    for rule in rules:
        spec = rule.spec
        fallback = None
        if spec.fallbackAction is not None:
            found = fallbacks.get(spec.fallbackAction.name)
            fallback = found if isinstance(found, HttpRequestFallbackAction) else None
        for target in spec.targets:
            resource = target.targetResourceName
            if route_match(resource) is None:
                continue
            governed = by_resource.setdefault(resource, Governed(resource))
            if governed.fallback is None:
                governed.fallback = fallback
            for ref in spec.strategies:
                for strategy in strategies.get(ref.name, []):
                    if ref.kind is not None and strategy.kind != ref.kind.value:
                        continue
                    if isinstance(strategy, RateLimitStrategy):
                        if strategy.spec.limitMode is LimitMode.GLOBAL:
                            governed.global_rates.append(strategy)
                        else:
                            share = strategy.per_instance_threshold(instances)
                            local = strategy.model_copy(
                                update={
                                    "spec": strategy.spec.model_copy(
                                        update={"limitMode": LimitMode.LOCAL, "threshold": share}
                                    )
                                }
                            )
                            if governed.rate is None or _rate(local) < _rate(governed.rate):
                                governed.rate = local  # the strictest of several
                    elif isinstance(strategy, ConcurrencyLimitStrategy):
                        limit = strategy.spec.maxConcurrency
                        governed.concurrency = min(limit, governed.concurrency or limit)
                    elif isinstance(strategy, CircuitBreakerStrategy):
                        if strategy.spec.strategy is BreakerStrategy.ERROR_REQUEST_RATIO and breaker is None:
                            breaker = strategy
                    elif isinstance(strategy, AdaptiveOverloadProtectionStrategy) and adaptive is None:
                        adaptive = strategy
    governed_list = sorted(
        by_resource.values(), key=lambda g: ("safe_regex" in (route_match(g.resource) or {}), g.resource)
    )
    return InboundPlan(governed_list, breaker, adaptive)


def _rate(strategy: RateLimitStrategy) -> float:
    return strategy.spec.threshold / strategy.spec.stat_duration_millis


def concurrency_cluster(app: str, resource: str) -> str:
    digest = hashlib.sha256(resource.encode()).hexdigest()[:10]
    return f"inbound|{app}|concurrency-{digest}"


def app_cluster(app: str) -> str:
    return f"inbound|{app}"


def _custom_response(fallback: HttpRequestFallbackAction | None) -> dict[str, Any]:
    if fallback is not None:
        desc = fallback.spec.behaviorDesc
        status, body = desc.responseStatusCode, desc.responseContentBody
        headers: tuple[tuple[str, str], ...] = tuple((h.key, h.value) for h in desc.responseAdditionalHeaders)
    else:
        status, body, headers = DEFAULT_FALLBACK
    policy: dict[str, Any] = {"body": {"inline_string": body}, "status_code": status}
    if headers:
        policy["response_headers_to_add"] = [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for k, v in headers
        ]
    blocked = [
        {
            "single_predicate": {
                "input": {
                    "name": "blocked",
                    "typed_config": typed(
                        "envoy.type.matcher.v3.HttpResponseHeaderMatchInput", {"header_name": header}
                    ),
                },
                "value_match": {"safe_regex": {"google_re2": {}, "regex": ".*"}},
            }
        }
        for header in (BLOCKED_HEADER, "x-envoy-ratelimited", "x-envoy-overloaded")
    ]
    return typed(
        "envoy.extensions.filters.http.custom_response.v3.CustomResponse",
        {
            "custom_response_matcher": {
                "matcher_list": {
                    "matchers": [
                        {
                            "predicate": {"or_matcher": {"predicate": blocked}},
                            "on_match": {
                                "action": {
                                    "name": "fallback",
                                    "typed_config": typed(
                                        "envoy.extensions.http.custom_response.local_response_policy.v3."
                                        "LocalResponsePolicy",
                                        policy,
                                    ),
                                }
                            },
                        }
                    ]
                }
            }
        },
    )


def _local_ratelimit(strategy: RateLimitStrategy) -> dict[str, Any]:
    threshold = strategy.spec.threshold
    always = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": "opensergo_rl"}
    return typed(
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        {
            "stat_prefix": "opensergo_local_rate_limit",
            # max_tokens must be >= 1; a threshold of 0 blocks everything through an empty refill.
            "token_bucket": {
                "max_tokens": max(1, threshold),
                "tokens_per_fill": max(1, threshold) if threshold else 1,
                "fill_interval": seconds(
                    strategy.spec.stat_duration_millis / 1000 if threshold else 3600 * 24
                ),
            },
            "filter_enabled": always,
            "filter_enforced": always,
            "response_headers_to_add": [
                {"header": {"key": BLOCKED_HEADER, "value": f"RateLimitStrategy/{strategy.name}"}}
            ],
        },
    )


def route_config(
    view: RuleView, namespace: str, app: str, plan_: InboundPlan, route_name: str
) -> dict[str, Any]:
    routes: list[dict[str, Any]] = []
    for governed in plan_.governed:
        match = route_match(governed.resource)
        assert match is not None
        cluster = app_cluster(app)
        if governed.concurrency is not None:
            cluster = concurrency_cluster(app, governed.resource)
        action: dict[str, Any] = {"cluster": cluster, "timeout": "0s"}
        per_filter: dict[str, Any] = {
            "envoy.filters.http.custom_response": _custom_response(governed.fallback)
        }
        if governed.rate is not None:
            per_filter["envoy.filters.http.local_ratelimit"] = _local_ratelimit(governed.rate)
        if governed.global_rates:
            action["rate_limits"] = [
                {
                    "actions": [
                        {"generic_key": {"descriptor_key": "namespace", "descriptor_value": namespace}},
                        {"generic_key": {"descriptor_key": "app", "descriptor_value": app}},
                        {
                            "generic_key": {
                                "descriptor_key": "resource",
                                "descriptor_value": governed.resource,
                            }
                        },
                        {"generic_key": {"descriptor_key": "strategy", "descriptor_value": strategy.name}},
                    ]
                }
                for strategy in governed.global_rates
            ]
        routes.append(
            {
                "name": governed.resource,
                "match": match,
                "route": action,
                "typed_per_filter_config": per_filter,
            }
        )
    routes.append(
        {"name": "app", "match": {"prefix": "/"}, "route": {"cluster": app_cluster(app), "timeout": "0s"}}
    )
    return {"name": route_name, "virtual_hosts": [{"name": app, "domains": ["*"], "routes": routes}]}


def static_cluster(name: str, host: str, port: int, max_requests: int | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
                    ]
                }
            ],
        },
    }
    if max_requests is not None:
        # max_requests bounds the requests in flight for HTTP/1.1 too, and an excess one is
        # refused at once (503, x-envoy-overloaded): Sentinel's semantics. The connection and
        # pending limits stay at their defaults (a pending limit of 0 refuses every request).
        cluster["circuit_breakers"] = {"thresholds": [{"max_requests": max_requests, "max_retries": 0}]}
    return cluster


def clusters(app: str, app_host: str, app_port: int, plan_: InboundPlan) -> list[dict[str, Any]]:
    out = [static_cluster(app_cluster(app), app_host, app_port)]
    for governed in plan_.governed:
        if governed.concurrency is not None:
            out.append(
                static_cluster(
                    concurrency_cluster(app, governed.resource), app_host, app_port, governed.concurrency
                )
            )
    return out


def http_filters(
    plan_: InboundPlan, rls_cluster: str, rls_metadata: tuple[tuple[str, str], ...] = ()
) -> list[dict[str, Any]]:
    """The inbound filter chain; breaker and adaptive filters only when a rule asks for them.
    ``rls_metadata``: call metadata of the RateLimitService calls (the node's credential)."""
    rls_service: dict[str, Any] = {"envoy_grpc": {"cluster_name": rls_cluster}}
    if rls_metadata:
        rls_service["initial_metadata"] = [{"key": k, "value": v} for k, v in rls_metadata]
    filters: list[dict[str, Any]] = [
        {
            "name": "envoy.filters.http.custom_response",
            "typed_config": typed("envoy.extensions.filters.http.custom_response.v3.CustomResponse", {}),
        }
    ]
    if plan_.adaptive is not None:
        filters.append(
            {
                "name": "envoy.filters.http.adaptive_concurrency",
                "typed_config": typed(
                    "envoy.extensions.filters.http.adaptive_concurrency.v3.AdaptiveConcurrency",
                    {
                        "gradient_controller_config": {
                            "sample_aggregate_percentile": {"value": 90},
                            "concurrency_limit_params": {"concurrency_update_interval": "0.1s"},
                            "min_rtt_calc_params": {"interval": "60s", "request_count": 50},
                        }
                    },
                ),
            }
        )
    if plan_.breaker is not None:
        spec = plan_.breaker.spec
        window = spec.statDuration.millis / 1000
        filters.append(
            {
                "name": "envoy.filters.http.admission_control",
                "typed_config": typed(
                    "envoy.extensions.filters.http.admission_control.v3.AdmissionControl",
                    {
                        "success_criteria": {
                            "http_criteria": {"http_success_status": [{"start": 100, "end": 500}]}
                        },
                        "sampling_window": seconds(window),
                        "sr_threshold": {
                            "default_value": {"value": max(1.0, (1 - float(spec.triggerRatio)) * 100)},
                            "runtime_key": "opensergo_sr",
                        },
                        "rps_threshold": {
                            "default_value": max(1, round(spec.minRequestAmount / max(window, 0.001))),
                            "runtime_key": "opensergo_rps",
                        },
                        "max_rejection_probability": {
                            "default_value": {"value": 100},
                            "runtime_key": "opensergo_maxp",
                        },
                    },
                ),
            }
        )
    filters += [
        {
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": typed(
                "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                {"stat_prefix": "opensergo_local_rate_limit"},
            ),
        },
        {
            "name": "envoy.filters.http.ratelimit",
            "typed_config": typed(
                "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                {
                    "domain": RATELIMIT_DOMAIN,
                    # Envoy's 20 ms default silently fails open against a Python service.
                    "timeout": "0.5s",
                    "failure_mode_deny": False,
                    "rate_limit_service": {
                        "grpc_service": rls_service,
                        "transport_api_version": "V3",
                    },
                },
            ),
        },
        {
            "name": FAULT_FILTER,
            "typed_config": typed("envoy.extensions.filters.http.fault.v3.HTTPFault", {}),
        },
        {
            "name": "envoy.filters.http.router",
            "typed_config": typed("envoy.extensions.filters.http.router.v3.Router", {}),
        },
    ]
    return filters
